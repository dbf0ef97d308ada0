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

# requests in progress get this long to finish on SIGTERM; the process runner waits 3 s in all
STOP_SECONDS = 2.0


def _listen(host: str, port: int) -> socket.socket:
    # every process has its own listening socket on the same port (SO_REUSEPORT), so the kernel
    # spreads new connections evenly instead of letting the busiest process accept most of them
    return socket.create_server((host, port), backlog=2048, reuse_port=True)


def _serve(host: str, port: int) -> None:
    # a child forked by a restart inherits the parent's handler, which would ignore a stop
    # until StopSignals below takes over; until then SIGTERM simply ends it (it serves nothing yet)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import eventlet

    eventlet.monkey_patch()
    sock = _listen(host, port)
    from eventlet import wsgi

    from services.common.shutdown import StopSignals, exit_now
    from services.gateway.wsgi import app

    signals = StopSignals((signal.SIGTERM,))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    green_sock = eventlet.greenio.GreenSocket(sock)
    server = eventlet.spawn(wsgi.server, green_sock, app, log_output=False, max_size=4096, keepalive=True, socket_timeout=60)
    eventlet.spawn(_exit_with_parent, signals)
    signals.wait()
    # SystemExit in the accept loop is eventlet's graceful stop: no new connections, idle
    # keep-alive connections closed, requests in progress answered and their connections closed
    server.kill(SystemExit)
    try:
        with eventlet.Timeout(STOP_SECONDS):
            server.wait()
    except eventlet.Timeout:
        log.warning("gateway process %s: requests still running after %.0f s; exiting", os.getpid(), STOP_SECONDS)
    exit_now(0)


def _exit_with_parent(signals) -> None:
    """A process whose parent died (SIGKILL leaves no time to stop the children) stops too,
    instead of serving on the shared port for ever beside the parent's replacement."""
    import eventlet

    parent = os.getppid()
    while os.getppid() == parent:
        eventlet.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)  # ends signals.wait()


def _spawn(host: str, port: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            _serve(host, port)
        except BaseException:  # the parent starts another; what ended this one is in the log
            log.exception("gateway process %s failed", os.getpid())
        finally:
            os._exit(1)
    return pid


def main() -> int:
    from services.common import logs, settings

    from services.gateway import config

    logs.configure("gateway")
    try:
        config.load()
    except config.UnsafeSettings as exc:
        for problem in exc.problems:
            log.error("will not start: %s", problem)
        return 2
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
    _signal_all(children, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS + 0.5  # SIGKILL only for a child that hangs
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        children.discard(pid)
        time.sleep(0.02)
    _signal_all(children, signal.SIGKILL)
    return 0


def _signal_all(children: set[int], signum: int) -> None:
    for pid in children:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it has exited already


if __name__ == "__main__":
    sys.exit(main())
