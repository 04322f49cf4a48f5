"""A local, stateful Kubernetes API server for tests (see `server.KubeAPIServer`)."""

from .server import FaultRule, KubeAPIServer, RecordedRequest
from .status import APIError
from .store import RolloutSimulation

__all__ = ["APIError", "FaultRule", "KubeAPIServer", "RecordedRequest", "RolloutSimulation"]
