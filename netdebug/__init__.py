"""meshecho's prober and debugging tools for Istio/Envoy routing."""

__version__ = "0.1.0"
