"""Checking one answer of the running gateway against the OpenAPI document (schemathesis)."""
from __future__ import annotations

from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def conforms(base_url: str, schema, label: str, status: int, *, call: dict | None = None, **case_data):
    """Send one hand-made case; its answer must have ``status`` and keep to the document."""
    case = schema.find_operation_by_label(label).Case(**case_data)
    response = case.call(base_url=base_url, timeout=10, **(call or {}))
    assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
    # a documented 5xx (503 service_unavailable) is the answer looked for here, not a crash
    checks = [check for check in POSITIVE_CHECKS if status < 500 or check is not not_a_server_error]
    case.validate_response(response, checks=checks, headers=(call or {}).get("headers"))
    return response
