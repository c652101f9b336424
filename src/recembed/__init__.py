"""recembed: learn, evaluate, compress, index and serve user and item representations.

Nothing heavy is imported here; submodules are imported on use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
