"""The execution input's JSON Schema as the README's table (field, accepts, default, meaning).

``python -m infra_scripts.input_doc`` rewrites the block between the README's
``<!-- execution-input-schema -->`` markers; a test fails when it is out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handlers.input_schema import SCHEMA_FILE, schema
from statemachine.config import PipelineConfig

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- execution-input-schema:begin -->", "<!-- execution-input-schema:end -->"


def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref")
    if not ref:
        return node
    target = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def accepts(node: dict, root: dict) -> str:
    """A short reading of one property's constraints."""
    node = _resolve(node, root)
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "anyOf" in node:
        return ", or ".join(accepts(option, root) for option in node["anyOf"])
    kind = node.get("type", "any")
    parts = [str(kind)]
    if "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    if "pattern" in node:
        parts.append(f"matching `{node['pattern']}`".replace("|", "\\|"))
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        values = node["additionalProperties"]
        parts.append(f"of name → {accepts(values, root)}")
    if kind == "array" and "items" in node:
        low, high = node.get("minItems", 0), node.get("maxItems", "∞")
        parts.append(f"of {low}–{high} {accepts(node['items'], root)}" if low != high
                     else f"of {low} {accepts(node['items'], root)}")
    return " ".join(p for p in parts if p)


def _default(field: str, defaults: dict) -> str:
    value: Any = defaults
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    if isinstance(value, dict):
        return ""
    return f"`{json.dumps(value)}`"


def rows(node: dict, root: dict, defaults: dict, prefix: str = "") -> list[str]:
    found = []
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        field = f"{prefix}{name}"
        child = _resolve(child, root)
        nested = child.get("type") == "object" and "properties" in child and name != "hyperparameters"
        if nested and "description" not in child:
            found += rows(child, root, defaults, f"{field}.")
            continue
        default = "required" if name in required else _default(field, defaults)
        found.append(f"| `{field}` | {accepts(child, root)} | {default} | {child.get('description', '')} |")
        if nested:
            found += rows(child, root, defaults, f"{field}.")
    return found


def render() -> str:
    root = schema()
    defaults = PipelineConfig().execution_defaults()
    lines = [BEGIN, f"Generated from [`{SCHEMA_FILE.relative_to(README.parent)}`]"
             f"({SCHEMA_FILE.relative_to(README.parent)}) by `python -m infra_scripts.input_doc`; "
             "defaults are the default config's.", "",
             "| field | accepts | default | meaning |", "|---|---|---|---|",
             *rows(root, root, defaults), END]
    return "\n".join(lines)


def readme_with_table(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main() -> None:
    README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
