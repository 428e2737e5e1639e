"""Pruning methods: one module per method, each registering a ``registry.Method``."""

from fangprune.methods.registry import (
    Method,
    get_method,
    methods,
    register,
    resolve_method,
)

__all__ = ["Method", "get_method", "methods", "register", "resolve_method"]
