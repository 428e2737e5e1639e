"""Deployable files from checkpoints: GGUF for llama.cpp (and the engines built on it: Ollama, LM Studio)."""
