"""Operational endpoints: liveness, readiness, metrics and the OpenAPI document."""
from __future__ import annotations

from pathlib import Path

import yaml
from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.metrics import REGISTRY

platform = Blueprint("platform", __name__)

SERVICES = ("accounts", "clicks", "settlement")
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@platform.get("/healthz")
def healthz():
    # no I/O: this process is alive and serving
    return jsonify({"status": "ok"})


@platform.get("/readyz")
def readyz():
    rpc = current_app.extensions["rpc"]
    checks = {}
    for service in SERVICES:
        try:
            rpc.call(service, "health")
            checks[service] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks[service] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    # an RPC answer implies the broker works; with no answer at all the broker is the first suspect
    checks["broker"] = "ok" if any(v == "ok" for v in checks.values()) else "unknown"
    response = jsonify({"status": "ready" if ready else "not_ready", "checks": checks})
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response


@platform.get("/metrics")
def metrics():
    return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def load_openapi() -> dict:
    return yaml.safe_load(OPENAPI_PATH.read_text())


@platform.get("/openapi.json")
def openapi():
    document = current_app.extensions.get("openapi")
    if document is None:
        document = current_app.extensions["openapi"] = load_openapi()
    return jsonify(document)
