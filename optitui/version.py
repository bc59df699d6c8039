"""optitui's version, in a module of its own: the store's writer, the remote server and
the command line read it without importing the package's public API (and the trainer
behind it)."""

__version__ = "0.1.0"
