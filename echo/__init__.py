"""meshecho's echo server: a mesh-aware drop-in for mendhak/http-https-echo."""

__version__ = "0.1.0"
