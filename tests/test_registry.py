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
from fangprune.prune.driver import prune_model

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


#: The wings of the package, bottom first: a module may import its own wing and the wings before it, never one
#: after it (top-level modules count as their own wing).
WINGS = ["io", "resources", "data", "modeling", "core", "evaluate", "export", "fang", "methods", "prune", "recovery",
         "report",
         "config", "runtime"]


def _imports(path: Path, pkg: Path = PKG) -> set[str]:
    """fangprune modules imported by ``path`` (relative imports resolved)."""
    package = list(path.relative_to(pkg.parent).parent.parts)  # the package holding the module
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
                subs = {f"{mod}.{a.name}" for a in node.names
                        if (pkg.parent / f"{mod}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
                out |= subs or {mod}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fangprune")}
    return out


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    graph = {}
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {m for m in _imports(path, pkg) if m != name}
    return graph


def _wing(module: str) -> int | None:
    parts = module.split(".")
    return WINGS.index(parts[1]) if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower wing into a higher one, as "module -> imported"."""
    bad = []
    for name, deps in graph.items():
        for dep in deps:
            low, high = _wing(name), _wing(dep)
            if low is not None and high is not None and high > low:
                bad.append(f"{name} -> {dep}")
    return sorted(bad)


def test_every_module_sits_in_a_known_wing():
    assert {_wing(name) is not None for name in import_graph() if name != "fangprune"} == {True}
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {
        w for w in WINGS if (PKG / w).is_dir()}


def test_imports_flow_down_the_wings_without_cycles():
    graph = import_graph()
    assert upward_imports(graph) == []
    for name, deps in graph.items():
        if name.startswith("fangprune.methods."):
            assert "fangprune.prune.driver" not in deps, name
    # depth-first search for a cycle among module-level imports (inside a wing)
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


def test_the_wing_check_catches_an_upward_import(tmp_path):
    import shutil

    copy_root = tmp_path / "fangprune"
    shutil.copytree(PKG, copy_root, ignore=shutil.ignore_patterns("__pycache__"))
    obs = copy_root / "core" / "obs.py"
    obs.write_text(obs.read_text() + "\nfrom fangprune.report import stats  # noqa\n")
    helper = copy_root / "modeling" / "models.py"
    helper.write_text(helper.read_text() + "\nfrom fangprune.config import DATA_DIR_ENV  # noqa\n")
    assert upward_imports(import_graph(copy_root)) == [
        "fangprune.core.obs -> fangprune.report.stats",
        "fangprune.modeling.models -> fangprune.config",
    ]
