"""Recover one pruned checkpoint by distillation from the dense teacher; save it in its input's format."""

from fangprune import runtime
from fangprune.io import load_torch, provenance, read_json, timed_step, write_json
from fangprune.modeling.checkpoint import SPARSITY_KEY, load_pruned, save_pruned
from fangprune.modeling.models import DTYPES, count_params, load_tokenizer
from fangprune.recovery.run import recover, write_curve

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("recover") as step:
    student = load_pruned(smk.input.student, dtype=DTYPES["float32"])  # fp32 master weights
    teacher = load_pruned(smk.input.teacher, dtype=DTYPES[p.dtype])
    data = load_torch(smk.input.windows)
    tokenizer = load_tokenizer(smk.input.student)
    result = recover(student, teacher, tokenizer, load_tokenizer(smk.input.teacher),
                     data, p.settings, p.seed, device, p.state)
    student = result.model.to("cpu", DTYPES[p.dtype])
manifest = read_json(f"{smk.input.student}/pruning.json")
manifest.pop("checkpoint_format", None)
manifest.update(method=p.method, recovery={**result.summary, "from": manifest.get("method"), "variant": p.variant,
                                           "resources": step, "provenance": provenance()})
structured = getattr(student.config, SPARSITY_KEY, None) is None
save_pruned(student, tokenizer, smk.output.checkpoint, manifest, structured=structured)
write_curve(smk.output.curve, result.curve)
write_json(smk.output.report, {"model": p.model, "method": p.method, "sparsity": p.sparsity, "variant": p.variant,
                               **result.summary, "params": count_params(student), "resources": step})
