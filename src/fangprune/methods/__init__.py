"""Pruning methods. ``registry`` is import-light; the algorithms import torch."""

from .registry import ALGORITHMS, AlgorithmSpec, resolve_method

__all__ = ["ALGORITHMS", "AlgorithmSpec", "resolve_method"]
