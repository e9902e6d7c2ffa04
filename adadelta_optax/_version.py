"""The package's version (read by setuptools, ``adadelta_optax.__version__`` and ``info()``)."""

__version__ = "0.2.0"
