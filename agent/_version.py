"""The agent's version, in a leaf module: what is cached under it must not import the package root."""

__version__ = "0.1.0"
