"""The method plug-in point: a method declared outside the package is found through the registry, and the
library's imports flow one way (no cycles; methods never import the driver)."""

import ast
import copy
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, random_windows, tiny_model

from fangprune.config import ConfigError, validate_config
from fangprune.methods.registry import Method, get_method, methods, resolve_method
from fangprune.pruning import prune_model

PKG = REPO / "src" / "fangprune"
sys.path.insert(0, str(Path(__file__).parent))


def test_builtin_methods_are_registered():
    assert {"obc", "o-fang", "flap", "f-fang", "wanda-sp", "mag-sp"} <= set(methods())
    assert get_method("o-fang").uses_groups and not get_method("obc").uses_groups
    with pytest.raises(KeyError, match="unknown algorithm 'nope'"):
        get_method("nope")


def test_method_needs_exactly_one_pruner():
    with pytest.raises(ValueError, match="exactly one"):
        Method(name="x", summary="", defaults={})


def test_plugin_method_runs_through_the_driver_unchanged():
    from plugins.lowest_norm_sp import LOWEST_NORM

    assert get_method("lowest-norm-sp") is LOWEST_NORM
    model = tiny_model()
    n = model.model.layers[0].mlp.down_proj.in_features
    norms = [torch.linalg.vector_norm(layer.mlp.down_proj.weight.data, dim=0) for layer in model.model.layers]
    params = resolve_method("mine", {"algorithm": "lowest-norm-sp"})
    assert params == {"algorithm": "lowest-norm-sp", "allocation": "uniform", "prune_attention": False,
                      "module_balance": "layer_params", "scale": 1.0}
    report = prune_model(model, random_windows(2, 16), params, [0.25] * len(norms), torch.device("cpu"))
    for layer, entry, norm in zip(model.model.layers, report["layers"], norms):
        kept = torch.tensor(entry["kept_channels"])
        assert layer.mlp.down_proj.in_features == kept.numel() < n
        removed = torch.ones(n, dtype=torch.bool)
        removed[kept] = False
        assert norm[removed].max() <= norm[kept].min()  # exactly the lowest-norm channels went


def test_plugin_named_in_config_is_validated_like_a_builtin(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    base = yaml.safe_load((REPO / "tests" / "config.ci.yaml").read_text())
    cfg = copy.deepcopy(base)
    cfg.update(plugins=["plugins.lowest_norm_sp"], methods={"mine": {"algorithm": "lowest-norm-sp", "scale": 2}})
    bad = copy.deepcopy(cfg)
    out = validate_config(cfg, check_sources=False)
    assert out["_methods_resolved"]["mine"]["scale"] == 2
    bad["methods"]["mine"]["scale"] = -1
    with pytest.raises(ConfigError, match="methods.mine.scale"):
        validate_config(bad, check_sources=False)
    missing = copy.deepcopy(base)
    missing["plugins"] = ["no_such_plugin_module"]
    with pytest.raises(ConfigError, match="plugins"):
        validate_config(missing, check_sources=False)


def _imports(path: Path) -> set[str]:
    """fangprune modules imported by ``path`` (relative imports resolved)."""
    package = list(path.relative_to(PKG.parent).parent.parts)  # the package holding the module
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("fangprune"):
                # ``from pkg import submodule`` depends on the submodule (the package __init__ is already loading)
                subs = {f"{mod}.{a.name}" for a in node.names if (PKG.parent / f"{mod}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
                out |= subs or {mod}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fangprune")}
    return out


def test_library_imports_have_no_cycles_and_methods_never_import_the_driver():
    graph = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {m for m in _imports(path) if m != name}
    for name, deps in graph.items():
        if name.startswith("fangprune.methods."):
            assert "fangprune.pruning" not in deps, name
    for shared in ("fangprune.selection", "fangprune.obs"):
        assert not any(d.startswith("fangprune.methods") for d in graph[shared]), shared
    # depth-first search for a cycle among module-level imports
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            dep = dep if dep in graph else dep.rsplit(".", 1)[0]
            if state.get(dep) == "open":
                raise AssertionError(" -> ".join(stack + [dep]))
            if dep in graph and dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
