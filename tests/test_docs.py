"""The documentation says what the code does: the generated key tables match the schema and the registry, and
every link, tool, config file and script named in README and docs/ exists."""

import re
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import docs_tables  # noqa: E402

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_configuration_page_lists_every_schema_key_and_method_parameter():
    page = docs_tables.PAGE.read_text()
    assert docs_tables.render(page) == page, "run: python tools/docs_tables.py"
    for key, _ in docs_tables.schema_rows(__import__("fangprune.config", fromlist=["x"]).load_schema()):
        assert f"| `{key}` |" in page, key


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_named_files_exist(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: link to missing {target}"
    for path in set(re.findall(r"(?<![\w/.])((?:tools|configs|workflow_scripts|rules)/[\w./-]+\.(?:py|yaml|smk))", text)):
        assert (REPO / path).exists(), f"{page.name}: names missing {path}"


def test_the_methods_page_plugin_example_registers_and_prunes():
    import torch
    from conftest import random_windows, tiny_model

    from fangprune.methods.registry import _REGISTRY, resolve_method
    from fangprune.prune.driver import prune_model

    code = re.search(r"```python\n(.*?)```", (REPO / "docs" / "methods.md").read_text(), re.S).group(1)
    try:
        exec(code, {})
        model = tiny_model()
        report = prune_model(model, random_windows(2, 16), resolve_method("my-sp", {}), [0.3] * 3,
                             torch.device("cpu"))
        assert 0.6 < report["block_params_kept_frac"] < 0.8
    finally:
        _REGISTRY.pop("my-sp", None)
