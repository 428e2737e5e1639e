"""The pruning driver: a registered method applied layer by layer through the core engine."""
