"""Health check of one nameko service, for container and orchestrator probes.

    python -m services.common.healthcheck accounts

Exits 0 when the named service answers its ``health`` RPC within five seconds, otherwise prints
the error and exits 1. Uses ``AMQP_URI`` from the environment (default: a local broker).
"""
from __future__ import annotations

import sys
import warnings

from services.common import settings

TIMEOUT_SECONDS = 5


def check(service: str) -> object:
    """The service's answer to ``health``; raises whatever went wrong."""
    with warnings.catch_warnings():  # keep probe output to the verdict
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        from nameko.standalone.rpc import ClusterRpcProxy

    config = {"AMQP_URI": settings.get("AMQP_URI")}
    with ClusterRpcProxy(config, timeout=TIMEOUT_SECONDS) as proxy:
        return getattr(proxy, service).health()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.common.healthcheck SERVICE", file=sys.stderr)
        return 2
    try:
        answer = check(args[0])
    except Exception as exc:  # any failure means "not healthy"
        print(f"{args[0]} unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]} healthy: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
