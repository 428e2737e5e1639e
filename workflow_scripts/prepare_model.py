"""Convert a configured model source (hub id, directory, GGUF) into a local HF directory."""

from pathlib import Path

from fangprune import runtime
from fangprune.io import atomic_path, provenance, timed_step, write_json
from fangprune.modeling.models import prepare_model

smk = snakemake  # noqa: F821 - injected by Snakemake
runtime.from_snakemake(smk)
with timed_step("prepare_model"), atomic_path(smk.output.model, directory=True) as tmp:
    info = prepare_model(smk.params.source, tmp, dtype="float32", revision=smk.params.revision)
    write_json(Path(tmp) / "fangprune_model.json", {**info, "provenance": provenance()})
