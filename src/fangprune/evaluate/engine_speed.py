"""Speed of GGUF files in llama.cpp (llama-cpp-python): prompt processing and generation tokens/s of a pruned
file against its dense one, same threads, runs alternating so that drift of the machine hits both alike."""

from __future__ import annotations

import statistics
import time

import numpy as np

from fangprune.evaluate.speed import speedups


def gguf_block_params(path: str) -> int:
    """Decoder-block weights of a GGUF file (tensors ``blk.*``): each costs one multiply-add per token, so the
    dense / pruned ratio of this count bounds the speedup a matmul-bound engine can reach (the LM head and the
    embeddings, which pruning leaves alone, are excluded)."""
    import gguf

    return sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors if t.name.startswith("blk."))


def flop_ratio_limit(dense_gguf: str, pruned_gguf: str) -> float:
    """Dense / pruned block FLOPs per token (see ``gguf_block_params``)."""
    return gguf_block_params(dense_gguf) / gguf_block_params(pruned_gguf)


def _timed_run(llm, prompt: list[int], gen: list[int]) -> tuple[float, float]:
    """Seconds of the prompt and of the generated tokens."""
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for tok in gen:  # one token at a time, as generation does (fixed tokens: sampling costs nothing here)
        llm.eval([tok])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def engine_version() -> str:
    """llama.cpp's ggml version and commit as built into llama-cpp-python (the binding pins the llama.cpp it
    vendors), e.g. "llama.cpp ggml 0.25.3 (commit 0c1e570) via llama-cpp-python 0.3.36"."""
    import ctypes

    import llama_cpp
    from llama_cpp import llama_cpp as lib

    parts = []
    for name in ("ggml_version", "ggml_commit"):
        fn = getattr(lib._lib, name, None)  # exported by ggml builds since 2025
        if fn is not None:
            fn.restype = ctypes.c_char_p
            parts.append(fn().decode())
    built = f"ggml {parts[0]} (commit {parts[1]}) " if len(parts) == 2 else ""
    return f"llama.cpp {built}via llama-cpp-python {llama_cpp.__version__}"


def llamacpp_speed(dense_gguf: str, pruned_gguf: str, prompt_len: int = 512, gen_tokens: int = 32,
                   repeats: int = 5, threads: int = 2, seed: int = 0) -> dict:
    """Tokens/s of both files and the pruned/dense speedup per repeat (median, min, max over repeats)."""
    import llama_cpp
    from llama_cpp import Llama

    rng = np.random.default_rng(seed)
    models = {k: Llama(model_path=str(p), n_ctx=prompt_len + gen_tokens, n_batch=prompt_len, n_threads=threads,
                       verbose=False) for k, p in (("dense", dense_gguf), ("pruned", pruned_gguf))}
    try:
        vocab = min(m.n_vocab() for m in models.values())
        prompt = rng.integers(0, vocab, prompt_len).tolist()
        gen = rng.integers(0, vocab, gen_tokens).tolist()
        for m in models.values():  # warm-up: page the weights in
            _timed_run(m, prompt[:32], gen[:2])
        runs = {"dense": [], "pruned": []}
        for _ in range(repeats):
            for k in ("dense", "pruned"):
                runs[k].append(_timed_run(models[k], prompt, gen))
    finally:
        for m in models.values():
            m.close()
    seconds = {(k, part): [r[i] for r in runs[k]] for k in runs for i, part in enumerate(("prompt", "gen"))}
    tokens = {"prompt": prompt_len, "gen": gen_tokens}
    out = {
        "engine": engine_version(),
        "threads": threads, "prompt_len": prompt_len, "gen_tokens": gen_tokens, "repeats": repeats,
    }
    for (k, part), s in seconds.items():
        out[f"{k}_{part}_tps"] = _spread([tokens[part] / x for x in s])
    for part in tokens:
        out[f"{part}_speedup"] = speedups(seconds[("dense", part)], seconds[("pruned", part)])
    return out
