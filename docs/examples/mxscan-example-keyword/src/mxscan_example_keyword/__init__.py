"""An example mxscan scanner plugin: keywords in the Subject or the body."""

from .scanner import Keyword

__all__ = ["Keyword"]
