"""gatewayctl: a GitOps control plane and configuration compiler for an Envoy-based AI gateway."""

__version__ = "0.1.0"
