"""The package version (its own module, so that any module can read it without importing ccnet)."""

__version__ = "0.1.0"
