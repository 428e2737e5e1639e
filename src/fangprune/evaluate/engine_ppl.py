"""Perplexity of a GGUF file computed by llama.cpp (llama-cpp-python) on given token windows: the same windows
and the same token mean as ``evaluate.perplexity``, so the engine's figure pairs window by window with the
workflow's PyTorch one."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import logsumexp
from tqdm.auto import tqdm


def llamacpp_perplexity(gguf_path: str, windows: torch.Tensor, threads: int = 2) -> dict:
    """exp(mean next-token NLL) of ``windows`` [n, seqlen] under the GGUF model, every window from an empty
    context (as the PyTorch evaluation does)."""
    from llama_cpp import Llama

    n, seqlen = windows.shape
    llm = Llama(model_path=str(gguf_path), n_ctx=seqlen, n_batch=seqlen, logits_all=True, n_threads=threads,
                verbose=False)
    window_nll = []
    try:
        for row in tqdm(windows.tolist(), desc="llama.cpp perplexity", mininterval=5):
            llm.reset()
            llm.eval(row)
            logits = np.asarray(llm.scores[: seqlen - 1], dtype=np.float64)
            nll = logsumexp(logits, axis=1) - logits[np.arange(seqlen - 1), row[1:]]
            window_nll.append(float(nll.mean()))
    finally:
        llm.close()
    mean = sum(window_nll) / n
    return {"ppl": math.exp(mean), "nll": mean, "windows": n, "window_nll": window_nll}
