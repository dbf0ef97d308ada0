"""The gateway's HTTP server: pre-forked processes, each serving with eventlet's WSGI server.

Most of a gateway request's life is waiting (for a click worker's answer, for an RPC), so each
process serves its connections from green threads: thousands of waiting requests cost no OS
thread, and no GIL hand-offs between threads. The parent binds the socket, forks
``GATEWAY_WORKERS`` children that accept on it, restarts a child that dies, and stops them all
on SIGTERM or SIGINT.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

log = logging.getLogger("gateway")


def _listen(host: str, port: int) -> socket.socket:
    # every process has its own listening socket on the same port (SO_REUSEPORT), so the kernel
    # spreads new connections evenly instead of letting the busiest process accept most of them
    return socket.create_server((host, port), backlog=2048, reuse_port=True)


def _serve(host: str, port: int) -> None:
    import eventlet

    eventlet.monkey_patch()
    sock = _listen(host, port)
    from eventlet import wsgi

    from services.gateway.wsgi import app

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    green_sock = eventlet.greenio.GreenSocket(sock)
    wsgi.server(green_sock, app, log_output=False, max_size=4096, keepalive=True, socket_timeout=60)


def _spawn(host: str, port: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            _serve(host, port)
        finally:
            os._exit(1)
    return pid


def main() -> int:
    from services.common import settings

    logging.basicConfig(level=settings.get("LOG_LEVEL"), format="%(asctime)s gateway %(levelname)s %(message)s")
    host, port = settings.get("GATEWAY_HOST"), settings.get_int("GATEWAY_PORT")
    workers = settings.get_int("GATEWAY_WORKERS")
    _listen(host, port).close()  # fail here, at once, if the port is taken
    log.info("listening on http://%s:%s with %s processes", host, port, workers)
    children = {_spawn(host, port) for _ in range(workers)}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid and pid in children:
            children.discard(pid)
            if not stopping:
                log.warning("gateway process %s exited (%s); starting another", pid, status)
                children.add(_spawn(host, port))
        time.sleep(0.1)
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        children.discard(pid)
        time.sleep(0.02)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
