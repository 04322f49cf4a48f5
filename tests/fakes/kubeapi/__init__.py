"""A local, stateful Kubernetes API server for tests (see `server.KubeAPIServer`)."""

from .server import FaultRule, Identity, KubeAPIServer, RecordedRequest, Rule
from .status import APIError
from .store import RolloutSimulation

__all__ = ["APIError", "FaultRule", "Identity", "KubeAPIServer", "RecordedRequest", "Rule",
           "RolloutSimulation"]
