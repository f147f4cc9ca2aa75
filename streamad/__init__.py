"""streamad: streaming anomaly detection for sensor and tabular data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamad-loe")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"
