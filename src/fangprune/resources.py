"""Predicted resources of every job from the model's shape and the run's token counts (docs/scale.md).

A job's peak host RSS is ``BASE`` (Python, torch, transformers) plus the largest of its phases, each a sum of
named terms (``Terms``): loading a checkpoint peaks at W memory-mapped, W plus its largest tensor read shard by
shard, or 2W read whole (``load_mib``); a layer-wise step holds the model on the host and one layer's Hessians and
calibration states, a whole-model step its logits and, for the Taylor scores, the gradients and the backward's
activations. The terms are sized from the model's shape (config.json, GGUF header or preset) and the calibration /
evaluation spec; the formulas were checked against every job's measured peak (``end <step>`` lines in the logs)
on SmolLM2-135M, Gemma-3-270M and the LLaMA-2-7B, LLaMA-3.1-8B, Qwen2.5-7B and LLaMA-2-70B shapes with 1 and 2
layers (docs/results/2026-12-03-scale-measurements.md, tests/test_resources.py).

GPU memory on a GPU job: the layer-wise steps hold one layer and its OBS state, the whole-model steps the model
(split over the job's GPUs by a device map). Time: a FLOP count of the rule divided by a throughput (``CPU_FLOPS``
per thread, measured here; ``GPU_FLOPS``, an assumed rate: the GPU runtimes are estimates), plus reading the
weights, times the margin; at least ``MIN_RUNTIME`` minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MiB = 2**20
#: Python + torch + transformers imported (a job that does nothing else: allocate, 508 MiB measured).
BASE_MIB = 512
#: scikit-learn imported and the working buffers of its PCA and KMeans (clustering; the import alone: 154 MiB).
SKLEARN_MIB = 256
#: Reading and tokenizing a text dataset (calibrate, holdout: 1915-1918 MiB measured for 49k-token vocabularies).
TEXT_MIB = 2048
#: Requests are the prediction times this, rounded up to 256 MiB (and to whole minutes).
MARGIN = 1.25
#: Throughputs (FLOP/s): fp32 and fp64 on one CPU thread (conservative: the 7B-shape runs reached about 25 and 22
#: per thread, docs/results/2026-12-03-scale-measurements.md), and assumed effective rates of one data-centre GPU
#: (estimates: bf16 matmuls at about a fifth of an H100's peak, fp64 factorisations at about a third of its fp64
#: peak).
CPU_FLOPS = 20e9
CPU_FP64_FLOPS = 10e9
GPU_FLOPS = 200e12
GPU_FP64_FLOPS = 20e12
#: Reading weights from a shared filesystem (bytes/s) and the shortest runtime a job asks for (minutes).
READ_BPS = 200e6
MIN_RUNTIME = 10
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

#: The rules that run on the model's device (GPU rules): the layer-wise ones stream one decoder layer through one
#: GPU, the whole-model ones hold the model on the model entry's ``gpus``. Every other rule is a CPU rule. The
#: workflow's resources (rules/common.smk), validation and the predictions all read these two tuples.
LAYERWISE = ("cluster", "complexity", "prune")
WHOLE_MODEL = ("scores", "importance", "evaluate_ppl", "evaluate_dense", "evaluate_zeroshot",
               "evaluate_zeroshot_dense", "evaluate_speed", "recover")
GPU_RULES = LAYERWISE + WHOLE_MODEL


#: How a job reads its model, which sets the load's peak. Memory-mapped (modeling.checkpoint.load_pruned at the
#: checkpoint's dtype): the pages it touches, at most W. Private copies shard by shard (models.load_model, so that
#: a pruned layer's dense pages do not stay resident) of the prepared model, which prepare_model writes in 100 MB
#: shards (one tensor per shard above that): W plus the largest tensor. Anything else (prepare_model reading the
#: user's source, which may be one file; the exports): 2W.
MAPPED_LOAD = ("evaluate_ppl", "evaluate_dense", "evaluate_zeroshot", "evaluate_zeroshot_dense", "evaluate_speed")
SHARDED_LOAD = ("cluster", "complexity", "scores", "importance", "prune")


@dataclass(frozen=True)
class Shape:
    """A decoder's dimensions (modeling.sources.source_shape) and the parameter counts they give."""

    hidden: int
    mlp: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = False

    @classmethod
    def from_source_shape(cls, shape: dict) -> "Shape":
        return cls(shape["hidden_size"], shape["intermediate_size"], shape["layers"], shape["heads"],
                   shape["kv_heads"], shape["head_dim"], shape["vocab_size"], bool(shape.get("tied")))

    @property
    def layer_params(self) -> int:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return self.hidden * (2 * q + 2 * kv) + 3 * self.hidden * self.mlp + 2 * self.hidden  # two RMSNorms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden

    @property
    def block_params(self) -> int:
        """The projections of every layer (what structured pruning removes; the RMSNorms stay)."""
        return self.layers * (self.layer_params - 2 * self.hidden)


def checkpoint_bytes(s: Shape, dtype: str, block_kept: float = 1.0) -> float:
    """Bytes of one saved checkpoint: every parameter at ``dtype``, the projections cut to ``block_kept`` of
    theirs (a structured prune at sparsity p keeps about 1 - p; unstructured pruning keeps dense tensors: 1)."""
    return (s.params - (1.0 - block_kept) * s.block_params) * DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class Tokens:
    """The token counts of a run: calibration windows, evaluation windows, zero-shot batches."""

    calib: int  # nsamples x seqlen
    calib_seqlen: int
    calib_batch: int
    eval_seqlen: int
    eval_batch: int
    eval_tokens: int  # every perplexity window of one evaluation job
    zeroshot_batch: int
    zeroshot_tokens: int  # a rough count of one zero-shot job's tokens (tasks x examples x choices x length)
    speed_tokens: int = 0  # one speed batch: batch x (prompt + decoded tokens)
    recover_tokens: int = 0  # a recovery job's token budget (the largest variant's)
    recover_batch: int = 0  # one recovery batch: batch_size x seqlen
    recover_param_bytes: int = 16  # training state per student parameter: 16 full fine-tuning, 4 LoRA (frozen)
    sparsegpt: bool = False  # a method reconstructs with SparseGPT (its H^-1 beside its upper Cholesky factor)
    holdout: bool = False  # held-out diagnostics: each pruned layer's fp64 input moments of o_proj and down_proj


@dataclass(frozen=True)
class Terms:
    """The memory terms of a job, MiB."""

    weights: float  # the model at the job's dtype
    largest: float  # its largest tensor (the embedding or LM head, or an MLP projection)
    layer: float  # one decoder layer at the job's dtype
    obs: float  # one layer's OBS state: the widest fp64 H^-1 (inverted in place), every fp32 H of the layer, and
    # the compensation's fp64 copy of down_proj with its update (twice hidden x MLP x 8 B); with SparseGPT the
    # larger of that and its sweep's: the H^-1 and its upper Cholesky factor, down_proj in fp64 and its mask; plus
    # the in-place inverse's temporaries (up to four blocks of 1024 rows)
    states: float  # calibration hidden states, inputs and outputs of a layer (fp32; on the host between layers)
    features: float  # one layer's MLP-input tokens for PCA / KMeans (fp32, host)
    acts: float  # one calibration batch through the MLP (fp32, on the compute device)
    logits: float  # one evaluation batch of logits (fp32)
    speed_logits: float  # one speed batch of logits (fp32)
    backward: float  # what a whole-model backward keeps per calibration batch (fp32 activations and logits)
    diagnostics: float = 0.0  # held-out diagnostics of the layer being pruned: fp64 input moments of o_proj and
    # down_proj and the error's fp64 copies of down_proj (dense, pruned, difference)
    training: float = 0.0  # recovery: the student in fp32 with its gradients and two AdamW moments (4 x 4 B per
    # parameter; LoRA: the frozen fp32 weights, 4 B; the dense count: an upper bound for a pruned student), one batch's backward and the teacher's
    # and student's logits with their softmaxes (6 copies)

    @classmethod
    def of(cls, s: Shape, t: Tokens, dtype: str = "float32") -> "Terms":
        b = DTYPE_BYTES[dtype]
        widest = max(s.mlp, s.heads * s.head_dim)
        hessians32 = 3 * s.hidden**2 + (s.heads * s.head_dim) ** 2 + s.mlp**2  # q/k/v, o, gate/up, down inputs
        tokens = t.calib_batch * t.calib_seqlen
        backward = (s.layers * (8 * s.hidden + 3 * s.mlp) + 4 * s.vocab) * tokens * 4
        return cls(weights=s.params * b / MiB, layer=s.layer_params * b / MiB,
                   largest=s.hidden * max(s.vocab, s.mlp, s.heads * s.head_dim) * b / MiB,
                   obs=(max(widest**2 * 8 + 2 * s.hidden * s.mlp * 8,
                            (2 * widest**2 * 8 + s.hidden * s.mlp * 9) if t.sparsegpt else 0)
                        + 4 * min(1024, widest) * widest * 8 + hessians32 * 4) / MiB,
                   diagnostics=(((s.heads * s.head_dim) ** 2 + s.mlp**2 + 3 * s.hidden * s.mlp) * 8 / MiB
                                if t.holdout else 0.0),
                   states=2 * t.calib * s.hidden * 4 / MiB, features=t.calib * s.hidden * 4 / MiB,
                   acts=4 * t.calib_batch * t.calib_seqlen * s.mlp * 4 / MiB,
                   logits=t.eval_batch * t.eval_seqlen * s.vocab * 4 / MiB,
                   speed_logits=t.speed_tokens * s.vocab * 4 / MiB,
                   backward=backward / MiB,
                   training=(t.recover_param_bytes * s.params + (s.layers * (8 * s.hidden + 3 * s.mlp) + 6 * s.vocab)
                             * t.recover_batch * 4) / MiB)


def load_mib(rule: str, m: Terms, single_file: bool = False) -> float:
    """The load's peak host memory (see MAPPED_LOAD / SHARDED_LOAD); ``single_file``: the prepared model was one
    file (runs before 497ab77 left a stale full-size file beside a random preset's shards, and it was read)."""
    if rule in MAPPED_LOAD:
        return m.weights
    if rule in SHARDED_LOAD and not single_file:
        return m.weights + m.largest
    return 2 * m.weights


def host_mib(rule: str, m: Terms, zeroshot_logits: float = 0.0, gpu: bool = False,
             single_file: bool = False) -> float:
    """Predicted peak host RSS of one job of ``rule`` (MiB); on a GPU job (``gpu``) the OBS state, the logits and
    the backward live on the GPU, the model on the host for the layer-wise steps."""
    load = load_mib(rule, m, single_file)
    if gpu and rule in LAYERWISE:
        extra = {"cluster": 3 * m.features + SKLEARN_MIB, "complexity": m.features}.get(rule, 0.0)
        return BASE_MIB + max(load, m.weights + m.states + extra)
    if gpu and rule in WHOLE_MODEL:
        return BASE_MIB + load
    phases = {
        "prepare_model": [load],
        "calibrate": [TEXT_MIB - BASE_MIB],
        "holdout": [TEXT_MIB - BASE_MIB],
        # PCA centres a copy of the tokens
        "cluster": [load, m.weights + m.layer + m.acts + m.states + 3 * m.features + SKLEARN_MIB],
        "complexity": [load, m.weights + m.layer + m.acts + m.states + m.features],
        "prune": [load, m.weights + m.layer + m.acts + m.obs + m.diagnostics + m.states],
        "scores": [load + m.backward],
        "recover": [load + m.weights + m.training],  # the teacher at its dtype beside the fp32 student
        "recovery_data": [TEXT_MIB - BASE_MIB],
        "importance": [load + m.backward],
        "groups": [1024],  # the score file and the assignment; 1194 MiB measured for Gemma's allocate
        "evaluate_ppl": [load, m.weights + 4 * m.logits, TEXT_MIB - BASE_MIB],  # C4 / PTB text read in the job
        "evaluate_dense": [load, m.weights + 4 * m.logits, TEXT_MIB - BASE_MIB],
        "evaluate_zeroshot": [load, m.weights + 2 * zeroshot_logits],
        "evaluate_zeroshot_dense": [load, m.weights + 2 * zeroshot_logits],
        "evaluate_speed": [load, m.weights + 4 * m.speed_logits],
        "export_gguf": [load + m.weights],
        "export_gguf_dense": [load + m.weights],
        "engine_ppl": [TEXT_MIB - BASE_MIB + m.weights + 4 * m.logits],
        "engine_ppl_dense": [TEXT_MIB - BASE_MIB + m.weights + 4 * m.logits],
        "engine_speed": [m.weights + 4 * m.logits],
    }
    return BASE_MIB + max(phases.get(rule, [1024]))  # allocate, reports: imports and small files


def gpu_mib(rule: str, m: Terms, zeroshot_logits: float = 0.0) -> float:
    """Predicted peak GPU memory of one job of ``rule`` on a GPU (MiB, all its GPUs together); 0 for CPU rules."""
    if rule in LAYERWISE:
        return m.layer + m.acts + (m.obs + m.diagnostics if rule == "prune" else 0.0)
    if rule in ("scores", "importance"):
        return 2 * m.weights + m.backward
    if rule == "recover":
        return m.weights + m.training
    if rule in ("evaluate_zeroshot", "evaluate_zeroshot_dense"):
        return m.weights + 2 * zeroshot_logits
    if rule == "evaluate_speed":  # the dense model beside the pruned one (at most as large)
        return 2 * m.weights + 4 * m.speed_logits
    if rule in WHOLE_MODEL:
        return m.weights + 4 * m.logits
    return 0.0


def flops(rule: str, s: Shape, t: Tokens, score_passes: int = 2, pca_dims: int = 64) -> tuple[float, float, float]:
    """(device FLOPs, device fp64 FLOPs, host FLOPs) of one job of ``rule``: 2 per parameter per token through
    the decoder layers (plus attention and the LM head where the rule computes them); pruning adds the Hessian
    products and the fp64 Cholesky inversions of the structured inputs (down_proj, o_proj: n^3 each); clustering
    adds the PCA (randomized SVD, about 28 N d P) and KMeans of every layer, which scikit-learn runs on the host."""
    layer_tok = 2 * s.layer_params + 4 * t.calib_seqlen * s.heads * s.head_dim
    head_tok = 2 * s.vocab * s.hidden
    decoder = s.layers * layer_tok
    if rule == "cluster":
        return t.calib * decoder, 0.0, s.layers * t.calib * pca_dims * (28 * s.hidden + 2 * 300 * 8 * 7)
    if rule == "complexity":
        return t.calib * decoder, 0.0, 0.0
    if rule == "prune":
        widths = (s.hidden, s.heads * s.head_dim, s.hidden, s.mlp)
        hess = s.layers * sum(2 * t.calib * w**2 for w in widths)
        return t.calib * decoder + hess, s.layers * (s.mlp**3 + (s.heads * s.head_dim) ** 3), 0.0
    if rule in ("scores", "importance"):
        return 3 * score_passes * t.calib * (decoder + head_tok), 0.0, 0.0
    if rule in ("evaluate_ppl", "evaluate_dense", "engine_ppl", "engine_ppl_dense"):
        return t.eval_tokens * (decoder + head_tok), 0.0, 0.0
    if rule in ("evaluate_zeroshot", "evaluate_zeroshot_dense"):
        return t.zeroshot_tokens * (decoder + head_tok), 0.0, 0.0
    if rule == "recover":  # teacher forward (2 per parameter), student forward and backward (6): dense counts
        return 8 * t.recover_tokens * (decoder + head_tok) / 2, 0.0, 0.0
    return 0.0, 0.0, 0.0


def compute_seconds(rule: str, s: Shape, t: Tokens, gpu: bool, threads: int = 1, score_passes: int = 2,
                    gpu_fp64_flops: float = GPU_FP64_FLOPS) -> float:
    """Seconds of arithmetic of one job at the device's rates (GPU: an estimate from assumed rates; the fp64
    rate is the site's ``resources.gpu_fp64_tflops``)."""
    f32, f64, host = flops(rule, s, t, score_passes)
    n = max(1, threads)
    if gpu:
        return f32 / GPU_FLOPS + f64 / gpu_fp64_flops + host / (CPU_FLOPS * n)
    return (f32 + host) / (CPU_FLOPS * n) + f64 / (CPU_FP64_FLOPS * n)


def request_mb(mib: float) -> int:
    """A memory request: the prediction times MARGIN, rounded up to 256 MiB, in MB (Snakemake's mem_mb)."""
    mib = math.ceil(mib * MARGIN / 256) * 256
    return math.ceil(mib * MiB / 1e6)


def runtime_seconds(rule: str, s: Shape, t: Tokens, m: Terms, gpu: bool, threads: int, score_passes: int = 2,
                    gpu_fp64_flops: float = GPU_FP64_FLOPS) -> float:
    """Predicted seconds of one job: the arithmetic at the device's rates plus reading the weights twice."""
    return (compute_seconds(rule, s, t, gpu, threads, score_passes, gpu_fp64_flops)
            + 2 * m.weights * MiB / READ_BPS)


def runtime_minutes(seconds: float) -> int:
    """A runtime request (minutes): the predicted seconds times MARGIN, at least MIN_RUNTIME."""
    return max(MIN_RUNTIME, math.ceil(seconds * MARGIN / 60))


def predict(rule: str, shape: dict, tokens: Tokens, dtype: str = "float32", gpu: bool = False, threads: int = 1,
            score_passes: int = 2, single_file: bool = False, gpu_fp64_flops: float = GPU_FP64_FLOPS) -> dict:
    """Predicted host MiB, GPU MiB, seconds and the runtime request (minutes) of one job of ``rule``
    (source_shape dict in; ``single_file``: see load_mib)."""
    s = Shape.from_source_shape(shape)
    m = Terms.of(s, tokens, dtype)
    zs = tokens.zeroshot_batch * tokens.eval_seqlen * s.vocab * 4 / MiB
    seconds = runtime_seconds(rule, s, tokens, m, gpu, threads, score_passes, gpu_fp64_flops)
    return {"host_mib": host_mib(rule, m, zs, gpu, single_file), "gpu_mib": gpu_mib(rule, m, zs) if gpu else 0.0,
            "seconds": seconds, "runtime_min": runtime_minutes(seconds)}


def run_tokens(config: dict) -> Tokens:
    """The token counts of a validated config (calibration, evaluation, zero-shot, recovery)."""

    cal, ev, zs, sp = config["calibration"], config["evaluation"], config["zeroshot"], config["speed"]
    rec = config.get("recovery") or {}
    # each variant's settings over the section's (the keys read here are flat)
    variants = {n: {**rec, **(v or {})} for n, v in rec.get("variants", {}).items()} if rec.get("methods") else {}
    windows = ev["max_windows"] or 600  # a whole test set: ~290k WikiText-2 tokens at 512
    limit = zs["limit"] or 10000
    return Tokens(calib=cal["nsamples"] * cal["seqlen"], calib_seqlen=cal["seqlen"],
                  calib_batch=cal.get("batch_size") or 1, eval_seqlen=ev["seqlen"],
                  eval_batch=ev.get("batch_size") or 1, eval_tokens=windows * ev["seqlen"],
                  zeroshot_batch=zs.get("batch_size") or 1,
                  zeroshot_tokens=len(zs["tasks"]) * limit * 4 * 128,
                  speed_tokens=sp["batch_size"] * (sp["prompt_len"] + sp["decode_tokens"]) if sp["enabled"] else 0,
                  recover_tokens=max((v["tokens"] for v in variants.values()), default=0),
                  recover_batch=max((v["batch_size"] * v["seqlen"] for v in variants.values()), default=0),
                  recover_param_bytes=16 if any(v["lora"] is None for v in variants.values()) or not variants else 4,
                  holdout=bool(config.get("diagnostics", {}).get("holdout_windows")),
                  sparsegpt=any(m.get("algorithm", name) == "sparsegpt" or m.get("reconstruction")
                                for name, m in config["methods"].items()))


def gpu_features(gpu_mem_mb: int, gpus: int, features: dict[str, int]) -> list[str]:
    """The node features (``resources.gpu_constraints``: feature -> MB of one of its GPUs) whose GPUs hold a job
    that needs ``gpu_mem_mb`` over ``gpus`` GPUs, smallest GPU first; every feature when the need is unknown (0)."""
    per_gpu = gpu_mem_mb / max(gpus, 1)
    return [f for f, mb in sorted(features.items(), key=lambda kv: (kv[1], kv[0])) if mb >= per_gpu]


#: Requests of a job whose model's shape is unknown before it is downloaded (a hub id) or that has no model.
FALLBACK = {"gpu": {"mem_mb": 32000, "runtime": 120}, "cpu": {"mem_mb": 8000, "runtime": 60}}


def job_request(rule: str, config: dict, model: str | None, threads: int = 1) -> dict:
    """What one job of ``rule`` asks for at its first attempt: mem_mb, runtime (minutes) and, for GPU rules
    (``GPU_RULES``), gpu_mem_mb (the predicted GPU memory of all its GPUs together; 0 when not predicted).

    Precedence: the model entry's ``mem_mb`` / ``runtime``, then ``resources.{gpu,cpu}_mem_mb`` / ``_runtime``,
    then the prediction from the model's shape (validation stores it in ``config["_shapes"]``), then FALLBACK.
    """
    gpu_rule = rule in GPU_RULES
    kind = "gpu" if gpu_rule else "cpu"
    entry = config["models"].get(model, {}) if model else {}
    shape = (config.get("_shapes") or {}).get(model) if model else None
    out = dict(FALLBACK[kind], gpu_mem_mb=0)
    if shape is not None:
        passes = 2 if config["clustering"].get("score_recompute") else 1
        on_gpu = gpu_rule and config["device"] != "cpu"
        p = predict(rule, shape, run_tokens(config), entry.get("dtype") or config["dtype"], on_gpu, threads, passes,
                    gpu_fp64_flops=config["resources"].get("gpu_fp64_tflops", GPU_FP64_FLOPS / 1e12) * 1e12)
        out = {"mem_mb": request_mb(p["host_mib"]), "runtime": p["runtime_min"],
               "gpu_mem_mb": request_mb(p["gpu_mib"]) if p["gpu_mib"] else 0}
    res = config["resources"]
    for key in ("mem_mb", "runtime"):
        given = entry.get(key) or res.get(f"{kind}_{key}")
        if given:
            out[key] = given
    return out
