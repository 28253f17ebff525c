from .errors import KaferError

__all__ = ["KaferError"]
__version__ = "0.1.0"
