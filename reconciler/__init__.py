"""qc-live-reconciler: declarative reconciler for QuantConnect live deployments."""

__version__ = "0.1.0"
