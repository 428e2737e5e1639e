"""fangprune: post-training structured pruning of LLaMA-style models with FANG (Function-Aware Neuron Grouping)
and its baselines. Each module holds one step of the paper; the Snakemake workflow calls them through thin
scripts."""

__version__ = "0.1.0"
