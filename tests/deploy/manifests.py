"""The Kubernetes manifests of deploy/k8s as data, and the vendored KEDA CRD schemas that check the
custom resources among them (tests/deploy/schemas/keda/README.md says where those come from)."""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
SECRET_TEMPLATE = K8S_DIR / "secret.yaml.example"
KEDA_CRDS = Path(__file__).resolve().parent / "schemas" / "keda"


def k8s_docs() -> list[tuple[str, dict]]:
    """(file name, document) for every document of deploy/k8s/*.yaml and the Secret template."""
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")) + [SECRET_TEMPLATE]:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def by_kind(docs: list[tuple[str, dict]], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in docs if d["kind"] == kind}


# --------------------------------------------------------------------------- vendored CRDs


def _strict(schema: dict) -> dict:
    """The schema with every object closed to fields it does not declare, as the API server's strict
    field validation (kubectl's default) rejects an unknown field instead of dropping it."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


def _load_crd(path: Path) -> dict:
    # The files are the KEDA Helm chart's templates as published: drop the template directives
    # (whole lines, and a label whose value is one) to get the CustomResourceDefinition itself.
    lines = [line for line in path.read_text().splitlines() if "{{" not in line]
    return yaml.safe_load("\n".join(lines))


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the strict JSON schema of that custom resource, one per served version
    of every vendored CRD."""
    schemas = {}
    for path in sorted(KEDA_CRDS.glob("crd-*.yaml")):
        crd = _load_crd(path)
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schemas[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_errors(doc: dict) -> list[str]:
    """What the vendored CRD's schema finds wrong in a custom resource (empty when it is valid)."""
    schema = crd_schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return [f"no vendored CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)]


def mutated(docs: list[tuple[str, dict]], kind: str, name: str, change) -> list[tuple[str, dict]]:
    """A deep copy of ``docs`` in which ``change(doc)`` was applied to the named object."""
    docs = copy.deepcopy(docs)
    (doc,) = [d for _, d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    change(doc)
    return docs
