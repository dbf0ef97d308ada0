"""Prometheus metrics of a gateway process (``GET /metrics``)."""
from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "gateway_requests_total", "HTTP requests by endpoint and status", ["method", "endpoint", "status"], registry=REGISTRY
)
REQUEST_LATENCY = Histogram(
    "gateway_request_seconds", "HTTP request latency by endpoint", ["method", "endpoint"], registry=REGISTRY
)
ERRORS = Counter("gateway_errors_total", "error answers by Flattr error code", ["code"], registry=REGISTRY)
RPC_LATENCY = Histogram(
    "gateway_rpc_seconds", "RPC latency by service, method and outcome", ["service", "method", "outcome"], registry=REGISTRY
)
