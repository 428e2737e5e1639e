"""GGUF tensor types: float (f32, f16, bf16) and block-quantized (q8_0, q4_0) through ``gguf.quants``.

Norms, biases and RoPE factors stay f32, as llama.cpp's own converter keeps 1-D tensors. A matrix whose row length
is not a multiple of the quantization block (32 values) cannot be quantized and falls back to f16; the export
report lists each such tensor.
"""

from __future__ import annotations

import numpy as np

TENSOR_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")


def _types():
    import gguf

    q = gguf.GGMLQuantizationType
    f = gguf.LlamaFileType
    return {
        "f32": (q.F32, f.ALL_F32),
        "f16": (q.F16, f.MOSTLY_F16),
        "bf16": (q.BF16, f.MOSTLY_BF16),
        "q8_0": (q.Q8_0, f.MOSTLY_Q8_0),
        "q4_0": (q.Q4_0, f.MOSTLY_Q4_0),
    }


def file_type(tensor_type: str):
    """``general.file_type`` of a file whose matrices are ``tensor_type``."""
    return _types()[tensor_type][1]


def encode(array: np.ndarray, tensor_type: str) -> tuple[np.ndarray, object, str | None]:
    """(data, GGML type, fallback note or None) of one float32 tensor stored as ``tensor_type``."""
    import gguf

    q = gguf.GGMLQuantizationType
    if tensor_type not in TENSOR_TYPES:
        raise ValueError(f"tensor type {tensor_type!r}; choose one of {', '.join(TENSOR_TYPES)}")
    qtype = _types()[tensor_type][0]
    if array.ndim == 1 or qtype == q.F32:
        return np.ascontiguousarray(array, dtype=np.float32), q.F32, None
    if qtype == q.F16:
        return array.astype(np.float16), q.F16, None
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if qtype != q.BF16 and array.shape[-1] % block:
        note = f"row length {array.shape[-1]} is not a multiple of {block}: stored f16"
        return array.astype(np.float16), q.F16, note
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype), qtype, None
