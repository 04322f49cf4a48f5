"""explain: what the compiled gateway does with one request, from the IR alone (core.py)."""

from gatewayctl.explain.core import (
    ExplainRequest,
    UnknownConsumer,
    UnknownIssuer,
    explain_request,
)
from gatewayctl.explain.model import Explanation

__all__ = ["ExplainRequest", "Explanation", "UnknownConsumer", "UnknownIssuer",
           "explain_request"]
