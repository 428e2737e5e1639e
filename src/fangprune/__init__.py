"""fangprune: post-training pruning of LLaMA-style models with FANG (Function-Aware Neuron Grouping, AAAI 2026)
and its baselines.

The subpackages ("wings") follow the workflow's DAG; imports flow one way, from the top of this list down
(``tests/test_registry.py`` checks it):

- ``config``, ``runtime``: validate a config; set up a workflow script (top: may import any wing)
- ``report``: tables, paired comparisons, statistics, plots, costs
- ``prune``: the driver that prunes a model layer by layer with a registered method
- ``methods``: the method plug-ins (O-FANG, F-FANG, OBC, FLAP, Wanda-sp, magnitude, unstructured family)
- ``fang``: FANG's own steps: context clustering, Taylor scores (Eq. 5), neuron groups, token re-weighting
  (Eq. 6), sparsity allocation (Eq. 8) and the per-layer importance behind it
- ``export``: deployable files (GGUF for llama.cpp)
- ``evaluate``: perplexity, zero-shot accuracy, speed, reconstruction diagnostics
- ``core``: the layer-wise engine, OBS math (Eq. 9-11), unit selection and surgery (Eq. 1-3, 13)
- ``modeling``: model sources, loading, families and layer roles, checkpoints, remote model code, tiny models
- ``io``, ``data``: atomic outputs, logging, provenance; calibration and evaluation text (bottom: import no wing)
"""

__version__ = "0.1.0"
