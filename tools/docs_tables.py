"""The generated reference tables of docs/configuration.md: every config key from the schema, and every method's
accepted parameters from the registry. ``python tools/docs_tables.py`` rewrites the blocks between their markers;
tests/test_docs.py fails when the page and the code disagree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
BLOCKS = ("schema-keys", "method-keys")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _type(node: dict) -> str:
    if "enum" in node:
        return " / ".join(f"`{v}`" for v in node["enum"])
    t = node.get("type", "object" if "properties" in node else "")
    return " or ".join(t) if isinstance(t, list) else t


def _default(node: dict) -> str:
    return f"`{json.dumps(node['default'])}`" if "default" in node else ""


def schema_rows(node: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """(dotted key, schema node) of every key the schema defines; a mapping's entries are written ``<name>``."""
    rows = []
    for key, sub in (node.get("properties") or {}).items():
        dotted = f"{prefix}{key}"
        rows.append((dotted, sub))
        if sub.get("properties"):
            rows += schema_rows(sub, dotted + ".")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            rows += schema_rows(extra, f"{dotted}.<name>.")
    return rows


def schema_table() -> str:
    from fangprune.config import load_schema

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, node in schema_rows(load_schema()):
        lines.append(f"| `{key}` | {_type(node)} | {_default(node)} | {_one_line(node.get('description'))} |")
    return "\n".join(lines)


def method_table() -> str:
    from fangprune.methods.registry import OVERRIDES, methods

    lines = ["| method | kind | parameters (default) |", "|---|---|---|"]
    for name, m in sorted(methods().items()):
        props = m.json_schema()["properties"]
        keys = [k for k in props if k not in ("algorithm", *OVERRIDES)]
        params = ", ".join(f"`{k}` ({json.dumps(m.defaults[k])})" if k in m.defaults else f"`{k}`" for k in keys)
        kind = ("structured" if m.structured else "zeroes weights") + (", neuron groups" if m.uses_groups else "")
        lines.append(f"| `{name}` | {kind} | {params} |")
    return "\n".join(lines)


def render(page: str) -> str:
    """``page`` with every generated block replaced by its current content."""
    for block, text in zip(BLOCKS, (schema_table(), method_table())):
        start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
        head, rest = page.split(start, 1)
        _, tail = rest.split(end, 1)
        page = f"{head}{start}\n{text}\n{end}{tail}"
    return page


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    PAGE.write_text(render(PAGE.read_text()))
    print(f"wrote {PAGE.relative_to(REPO)}")
