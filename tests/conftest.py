import os
import re
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


def markdown_cells(text: str) -> list:
    """Lines of a Markdown report: table rows as stripped cells (alignment rows dropped), other lines as is."""
    out = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                out.append(cells)
        elif line.strip():
            out.append(line)
    return out


#: The longest tests (minutes each on 2 cores), in the order two xdist workers should take them: with
#: ``-n 2 --maxschedchunk 1`` (.ci/run) the first two go to one worker and the next two to the other, so the
#: SLURM cluster run and the default-model run share one worker, the two tiny-model workflow runs the other,
#: and the short tests fill whichever is free.
LONGEST = ("test_workflow_runs_through_sbatch", "test_default_models_o_fang_40", "test_full_workflow_on_tiny_llama",
           "test_qwen2_and_gemma3_through_the_workflow")


def pytest_collection_modifyitems(config, items):
    """Long runs first, the longest in LONGEST's order, then the other slow-marked ones, then the rest."""
    def rank(item):
        for i, name in enumerate(LONGEST):
            if item.name.startswith(name):
                return i
        return len(LONGEST) + (item.get_closest_marker("slow") is None)

    items.sort(key=rank)
