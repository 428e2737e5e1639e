"""Model sources, loading, families and their layer roles, pruned checkpoints (and the remote model code they
ship), the causal-LM loss, tiny random models for tests. Imports no other wing."""
