import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FANG_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tokenizer():
    from fangprune.modeling.models import load_tokenizer
    from fangprune.modeling.tiny import SMOLLM2_GGUF

    return load_tokenizer(SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer):
    from fangprune.modeling.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", "llama", tokenizer)


def tiny_model(arch="llama", vocab_size=128, seed=0, **overrides):
    """A random tiny model built in memory (no tokenizer needed)."""
    from transformers import AutoModelForCausalLM

    from fangprune.modeling.tiny import tiny_config

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size=vocab_size, **overrides)).eval()


def random_windows(n=4, seqlen=32, vocab_size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (n, seqlen), generator=g)
