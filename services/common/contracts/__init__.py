"""The platform's event contracts: one JSON schema per event type and version, in this folder
(``<type>.v<version>.schema.json``, each extending ``envelope.v1.schema.json``). See README.md."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

HERE = Path(__file__).resolve().parent
BASE_URI = "https://flattr.invalid/events/"


class NoSchema(LookupError):
    """An event whose type and version have no schema here: not part of any contract."""


def schema_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.schema.json"


def event_types() -> set[tuple[str, int]]:
    """Every (type, version) with a schema."""
    found = set()
    for path in HERE.glob("*.v*.schema.json"):
        event_type, _, version = path.name.removesuffix(".schema.json").rpartition(".v")
        if event_type != "envelope":
            found.add((event_type, int(version)))
    return found


@functools.cache
def _registry() -> Registry:
    return Registry().with_resources(
        (BASE_URI + path.name, Resource.from_contents(json.loads(path.read_text()))) for path in HERE.glob("*.schema.json")
    )


@functools.cache
def validator(event_type: str, version: int) -> jsonschema.Draft202012Validator:
    path = HERE / schema_name(event_type, version)
    if event_type == "envelope" or not path.is_file():
        raise NoSchema(f"no schema for {event_type} version {version} in {HERE}")
    return jsonschema.Draft202012Validator(
        json.loads(path.read_text()), registry=_registry(), format_checker=jsonschema.FormatChecker()
    )


def validate(event: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``event`` (a whole envelope) fits its type's
    schema, and ``NoSchema`` when its type and version have none."""
    validator(str(event.get("type")), event.get("version") if isinstance(event.get("version"), int) else 0).validate(event)
