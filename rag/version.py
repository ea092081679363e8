"""The package's version, in a module of its own: the library's modules record it (in manifests)
without importing `rag/__init__.py`, the door through which only the outside comes in."""

__version__ = "0.1.0"
