"""The tokenizer inside a GGUF file: copied from the source model's GGUF when there is one (exactly what
llama.cpp already reads for that model), otherwise built from the HF tokenizer files with the ``gguf`` package's
vocab helpers."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def copy_tokenizer(writer, source_gguf: str | Path) -> int:
    """Copy every ``tokenizer.*`` key of ``source_gguf`` into ``writer``; returns the vocabulary size."""
    import gguf

    reader = gguf.GGUFReader(str(source_gguf))
    n_vocab = None
    for key, fld in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = fld.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = fld.types[1]
            writer.add_key_value(key, fld.contents(), vtype, sub_type=sub)
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(fld.data)
        else:
            writer.add_key_value(key, fld.contents(), vtype)
    if n_vocab is None:
        raise ValueError(f"{source_gguf}: no tokenizer.ggml.tokens to copy")
    return n_vocab


def build_tokenizer(writer, model_dir: str | Path) -> tuple[int, list[str]]:
    """Write a BPE tokenizer from ``model_dir``'s tokenizer.json with gguf's vocab helpers; returns the vocabulary
    size and notes. The pre-tokenizer is not identified (llama.cpp's converter does that by hashing known
    tokenizers), so llama.cpp's default one is named: token ids of raw text can differ from the HF tokenizer's,
    while the model itself is unchanged."""
    from gguf.vocab import BpeVocab, LlamaHfVocab, SpecialVocab

    try:  # byte-level BPE (GPT-2 style: Llama 3, Qwen2, SmolLM2)
        vocab = BpeVocab(Path(model_dir))
    except FileNotFoundError:  # SentencePiece-style BPE with byte fallback (Llama 2, Mistral)
        vocab = LlamaHfVocab(Path(model_dir))
    tokens, scores, types = [], [], []
    for text, score, ttype in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(ttype)
    writer.add_tokenizer_model(vocab.tokenizer_model)
    if vocab.tokenizer_model == "gpt2":
        writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    if vocab.tokenizer_model == "llama":
        writer.add_token_scores(scores)
    writer.add_token_types(types)
    SpecialVocab(Path(model_dir), load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)
    notes = ["tokenizer built from tokenizer.json; pre-tokenizer not identified, llama.cpp's default is named"]
    return len(tokens), notes
