"""The execution input's JSON Schema (``execution_input.schema.json``), checked with Powertools'
validation utility by ValidateInput and, before StartExecution, by ``stepml`` and the upload
trigger. A failure is InvalidInput naming the field."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

from handlers.errors import InvalidInput

SCHEMA_FILE = Path(__file__).with_name("execution_input.schema.json")


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def check_input(given: Any) -> None:
    """InvalidInput unless ``given`` is a valid execution input."""
    if not isinstance(given, dict):
        raise InvalidInput(f"execution input must be a JSON object, got {type(given).__name__}")
    try:
        # A copy: fastjsonschema rewrites the $refs of the definition it is given.
        validate(event=given, schema=copy.deepcopy(schema()))
    except SchemaValidationError as error:
        raise InvalidInput(describe(error)) from None


def describe(error: SchemaValidationError) -> str:
    """fastjsonschema's 'data.training.instance_count must be …' as 'training.instance_count
    must be …', with the field's description where the rule alone says little."""
    field = ".".join(str(part) for part in (error.path or [])[1:])
    value, definition = error.value, error.definition or {}
    if error.rule == "additionalProperties" and isinstance(value, dict):
        unknown = sorted(set(value) - set(definition.get("properties", {})))
        return f"unknown input fields: {', '.join(_join(field, key) for key in unknown)}"
    if error.rule == "required" and isinstance(value, dict):
        missing = [key for key in error.rule_definition or [] if key not in value]
        about = {key: definition.get("properties", {}).get(key, {}).get("description") for key in missing}
        return "; ".join(f"{_join(field, key)} is required" + (f": {text}" if text else "")
                         for key, text in about.items())
    if error.rule in ("anyOf", "oneOf") and definition.get("description"):
        return f"{field} must be {definition['description']}, got {value!r}"
    message = str(error.validation_message or "")  # "data.<field> must …" or "data must …"
    if message.startswith("data"):
        message = message[5:] if message.startswith("data.") else f"execution input{message[4:]}"
    description = definition.get("description")
    return f"{message} ({description}), got {value!r}" if description else f"{message}, got {value!r}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
