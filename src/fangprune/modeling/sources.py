"""Model sources: what a config's ``source`` names (hub id, local directory, GGUF file, a package's file, a tiny
random model) and which architectures fangprune can prune. Read by validation before any job and by the loaders."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

#: Decoder architectures whose layers fangprune reaches by role (attention q/k/v/o, MLP gate/up/down, norms).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
#: Multimodal model_type -> the model_type of the text decoder its config nests (pruned alone; nested_text.py).
NESTED_TEXT = {"gemma3": "gemma3_text"}


def local_model_type(src: dict) -> str | None:
    """model_type from a local directory's config.json (None for hub ids, GGUF files and random models)."""
    shape = source_shape(src) if src["kind"] == "dir" else None
    return shape["model_type"] if shape else None


#: GGUF ``general.architecture`` -> HF model_type (llama.cpp writes Mistral as ``llama``).
GGUF_ARCH_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}


def source_model_type(src: dict) -> str | None:
    """model_type of a resolved source without loading weights: a local directory's config.json, a GGUF file's
    architecture key, a random model's family; None for hub ids (known only once downloaded)."""
    shape = source_shape(src)
    return shape["model_type"] if shape else None


#: Shape keys of source_shape, from a HF config.
_HF_KEYS = {"hidden_size": "hidden_size", "intermediate_size": "intermediate_size", "layers": "num_hidden_layers",
            "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
            "vocab_size": "vocab_size", "context": "max_position_embeddings", "tied": "tie_word_embeddings"}


def source_shape(src: dict) -> dict | None:
    """The dimensions of a resolved source without loading weights: model_type, hidden_size, intermediate_size,
    layers, heads, kv_heads, head_dim, vocab_size, context (tokens) and tied (LM head = embedding; None: unknown), from a local config.json, a GGUF header
    or a random model's config; None for hub ids (known only once downloaded)."""
    if src["kind"] == "random":
        from fangprune.modeling.tiny import tiny_kwargs

        arch, overrides = random_spec(src["path"])
        cfg = {"model_type": arch, **tiny_kwargs(arch, **overrides)}
    elif src["kind"] == "gguf":
        cfg = dict(_gguf_config(str(Path(src["path"]) / src["gguf_file"])))
    elif src["kind"] == "dir" and (Path(src["path"]) / "config.json").exists():
        import json

        raw = json.loads((Path(src["path"]) / "config.json").read_text())
        mtype = raw.get("model_type")
        # a multimodal checkpoint is pruned as its nested text model
        text = raw.get("text_config", raw) if mtype in NESTED_TEXT else raw
        cfg = {**text, "model_type": NESTED_TEXT.get(mtype, mtype)}
    else:
        return None
    shape = {key: cfg.get(hf) for key, hf in _HF_KEYS.items()}
    shape["kv_heads"] = shape["kv_heads"] or shape["heads"]
    if not shape["head_dim"] and shape["heads"]:
        shape["head_dim"] = shape["hidden_size"] // shape["heads"]
    return {"model_type": cfg.get("model_type"), **shape}


@functools.lru_cache(maxsize=8)
def _gguf_config(path: str) -> tuple:
    """The HF config keys of source_shape from a GGUF header, as (key, value) pairs (llama.cpp's key names; read
    once per process: opening a GGUF with the tokenizer's arrays takes seconds)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def get(key):
        field = reader.get_field(key)
        return field.contents() if field is not None else None

    arch = get("general.architecture")
    tokens = reader.get_field("tokenizer.ggml.tokens")
    return (("model_type", GGUF_ARCH_MODEL_TYPE.get(arch, arch)),
            ("hidden_size", get(f"{arch}.embedding_length")),
            ("intermediate_size", get(f"{arch}.feed_forward_length")),
            ("num_hidden_layers", get(f"{arch}.block_count")),
            ("num_attention_heads", get(f"{arch}.attention.head_count")),
            ("num_key_value_heads", get(f"{arch}.attention.head_count_kv")),
            ("head_dim", get(f"{arch}.attention.key_length")),
            ("vocab_size", len(tokens.data) if tokens is not None else None),
            ("max_position_embeddings", get(f"{arch}.context_length")),
            # llama.cpp writes no output.weight when the LM head is the embedding
            ("tie_word_embeddings", not any(t.name == "output.weight" for t in reader.tensors)))


#: Tiny random models for tests and CI: name -> (architecture, config overrides of testing.tiny_config).
RANDOM_MODELS = {
    "llama": ("llama", {}),  # GQA 4 query / 2 KV heads
    "llama-mha": ("llama", {"num_key_value_heads": 4}),  # LLaMA-1/2 style multi-head attention
    "qwen2": ("qwen2", {}),  # GQA with q/k/v biases
    "mistral": ("mistral", {}),
    "gemma3": ("gemma3_text", {}),  # 1 KV head, q/k norms, four norms per layer, sliding + global layers
}


def random_spec(name: str) -> tuple[str, dict]:
    """(model_type, config overrides) of ``random:<name>``: a tiny model (RANDOM_MODELS) or a real-width shape
    preset ``<preset>[:<layers>]`` (modeling/shapes.py)."""
    from fangprune.modeling.shapes import SHAPES, parse_preset, preset_config

    if name in RANDOM_MODELS:
        return RANDOM_MODELS[name]
    if parse_preset(name) is not None:
        return preset_config(name)
    raise FileNotFoundError(f"random models exist for {', '.join(RANDOM_MODELS)} and the shape presets "
                            f"{', '.join(SHAPES)} (<preset>[:<layers>]), not {name!r}")


def resolve_source(source: str) -> dict[str, str | None]:
    """Classify a model source. Returns {kind: hub|dir|gguf|random, path, gguf_file}; raises FileNotFoundError
    for a local path that does not exist. ``random:<name>`` is a random model: a tiny one (tests, CI; see
    RANDOM_MODELS) or a real-width shape preset with few layers (see random_spec)."""
    if source.startswith("random:"):
        name = source[7:]
        try:
            random_spec(name)
        except ValueError as exc:
            raise FileNotFoundError(str(exc)) from None
        return {"kind": "random", "path": name, "gguf_file": None}
    if source.startswith("pkg:"):
        pkg, _, rel = source[4:].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"python package {pkg!r} is not installed (source {source!r}): pip install {pkg.replace('_', '-')}"
            )
        if not rel:  # a package that assembles its model file (chunks shipped as separate packages)
            return resolve_source(str(_assembled(pkg, source)))
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        return resolve_source(str(path))
    path = Path(source).expanduser()
    looks_local = source.startswith(("/", ".", "~")) or source.endswith(".gguf") or path.exists()
    if not looks_local:
        if source.count("/") != 1:
            raise FileNotFoundError(f"{source!r} is neither an existing path nor a hub id of the form org/name")
        return {"kind": "hub", "path": source, "gguf_file": None}
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {str(path)!r}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise FileNotFoundError(f"{str(path)!r} is a file but not a .gguf model")
        return {"kind": "gguf", "path": str(path.parent.resolve()), "gguf_file": path.name}
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"directory {str(path)!r} has no config.json")
    return {"kind": "dir", "path": str(path.resolve()), "gguf_file": None}


def _assembled(pkg: str, source: str) -> Path:
    """The file a ``pkg:<package>`` source assembles with the package's ``assemble()`` (checksum checked there)."""
    import importlib

    module = importlib.import_module(pkg)
    assemble = getattr(module, "assemble", None)
    if not callable(assemble):
        raise FileNotFoundError(f"{source!r}: package {pkg!r} has no assemble(); name a file: pkg:{pkg}/<file>")
    try:
        return Path(assemble())
    except (OSError, ValueError, ImportError) as exc:  # missing chunk packages, bad checksum
        raise FileNotFoundError(
            f"{source!r}: {pkg}.assemble() failed ({exc}); reinstall with pip install {pkg.replace('_', '-')}"
        ) from None
