"""Write a checkpoint (pruned, zeroed or dense) as one GGUF file that llama.cpp runs.

The file is written to a temporary sibling and renamed into place, with the user's normal permissions, so a
killed export never leaves a file that looks complete.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tqdm import tqdm

from fangprune.export import gguf_layout, gguf_tensors, gguf_vocab
from fangprune.export.gguf_layout import GGUFExportError
from fangprune.io import atomic_path
from fangprune.modeling.sources import resolve_source

log = logging.getLogger(__name__)

__all__ = ["GGUFExportError", "export_gguf", "tokenizer_gguf_for"]


def tokenizer_gguf_for(source: str) -> str | None:
    """The GGUF whose tokenizer a model built from ``source`` uses: the source itself when it is a GGUF file, the
    default model's for tiny random models (they are built with its tokenizer), None otherwise."""
    src = resolve_source(source)
    if src["kind"] == "random":
        from fangprune.modeling.tiny import SMOLLM2_GGUF

        src = resolve_source(SMOLLM2_GGUF)
    if src["kind"] == "gguf":
        return os.path.join(src["path"], src["gguf_file"])
    return None


def export_gguf(model_dir: str | Path, out_path: str | Path, tensor_type: str = "f16",
                tokenizer_gguf: str | Path | None = None, name: str | None = None) -> dict:
    """Export the checkpoint in ``model_dir`` to ``out_path``; returns a report (architecture, per-layer sizes,
    tensors that fell back to f16, bytes, seconds). Raises GGUFExportError before writing anything when llama.cpp
    could not represent the model."""
    import gguf

    from fangprune.modeling.checkpoint import load_pruned

    if tensor_type not in gguf_tensors.TENSOR_TYPES:
        raise ValueError(f"tensor type {tensor_type!r}; choose one of {', '.join(gguf_tensors.TENSOR_TYPES)}")
    start = time.perf_counter()
    model = load_pruned(model_dir)
    layout = gguf_layout.plan(model)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    fallbacks, notes = [], list(layout.notes)
    with atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(path=None, arch=layout.arch)
        writer.add_name(name or Path(model_dir).name)
        writer.add_file_type(gguf_tensors.file_type(tensor_type))
        if tensor_type in ("q8_0", "q4_0"):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for method, args in gguf_layout.metadata(model, layout):
            getattr(writer, method)(*args)
        if tokenizer_gguf is not None:
            tok_vocab = gguf_vocab.copy_tokenizer(writer, tokenizer_gguf)
        else:
            tok_vocab, tok_notes = gguf_vocab.build_tokenizer(writer, model_dir)
            notes += tok_notes
        if tok_vocab > n_vocab:
            raise GGUFExportError(f"the tokenizer has {tok_vocab} tokens, the embedding only {n_vocab} rows")
        for tname, array in tqdm(list(gguf_layout.tensors(model, layout)), desc="gguf tensors", mininterval=5):
            data, qtype, note = gguf_tensors.encode(array, tensor_type)
            if note is not None:
                fallbacks.append(f"{tname}: {note}")
                log.info("%s: %s", tname, note)
            writer.add_tensor(tname, data, raw_dtype=qtype)
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    for note in notes:
        log.info("%s", note)
    return {
        "gguf": str(out_path),
        "architecture": layout.arch,
        "tensor_type": tensor_type,
        "head_count": layout.heads,
        "head_count_kv": layout.kv_heads,
        "feed_forward_length": layout.ff,
        "context_length": layout.context_length,
        "tokenizer": str(tokenizer_gguf) if tokenizer_gguf is not None else "built from tokenizer.json",
        "f16_fallbacks": fallbacks,
        "notes": notes,
        "bytes": Path(out_path).stat().st_size,
        "seconds": time.perf_counter() - start,
    }
