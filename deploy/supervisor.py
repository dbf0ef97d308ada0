"""A small process supervisor: starts named programs, shows their output line by line, restarts
one that dies (with backoff, as compose's ``restart: always`` and Kubernetes do) and stops them
all on request, SIGTERM first and SIGKILL only for one that is still running after the grace.

``deploy.dev`` runs the platform with it; another tool can run any set of programs with it::

    supervisor = Supervisor({"web": ["python", "-m", "http.server"]}, env=dict(os.environ))
    supervisor.start_all()
    while not done:
        supervisor.poll(0.2)   # shows output, restarts the dead
    supervisor.stop()

What it reports, each as one line of its own name (``dev`` in ``make dev``), in a stable form
that tools may parse::

    started NAME pid=PID                                   (each start, restarts included)
    NAME pid=PID exited with CODE; restarting in S s       (CODE: status 1, or signal SIGKILL)
    NAME pid=PID did not stop in time; killing it
    stopped
"""
from __future__ import annotations

import ctypes
import os
import select
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the supervisor dies, even by SIGKILL, so no
    child outlives it (Linux; elsewhere the process group is the only safety net)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Backoff:
    """Delay before restarting a child that died: ``first`` seconds, doubled for every death in
    a row, at most ``most``; a child that ran ``healthy_after`` seconds starts over at ``first``."""

    first: float = 0.5
    most: float = 8.0
    healthy_after: float = 10.0

    def delay(self, deaths_in_a_row: int) -> float:
        return min(self.most, self.first * 2 ** max(0, deaths_in_a_row - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float | None = None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


class Supervisor:
    def __init__(
        self,
        programs: dict[str, list[str]],
        env: dict[str, str] | None = None,
        say: Callable[[str, str], None] | None = None,
        name: str = "dev",
        backoff: Backoff | None = None,
        stop_grace: float = 2.8,
    ):
        self.children = {n: Child(n, list(argv)) for n, argv in programs.items()}
        self.env = env
        self.say = say or (lambda who, line: print(f"{who:>10} | {line}", flush=True))
        self.name = name
        self.backoff = backoff or Backoff()
        self.stop_grace = stop_grace
        self.selector = selectors.DefaultSelector()
        self._pending: dict = {}

    # -- starting and restarting ---------------------------------------------------------------

    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_stop_with_parent
        )
        os.set_blocking(child.process.stdout.fileno(), False)
        self.selector.register(child.process.stdout, selectors.EVENT_READ, child)
        child.started_at, child.restart_at = time.monotonic(), None
        self.say(self.name, f"started {child.name} pid={child.process.pid}")

    def pids(self) -> dict[str, int]:
        """The running children's PIDs by name."""
        return {c.name: c.process.pid for c in self.children.values() if c.process and c.process.poll() is None}

    def poll(self, timeout: float) -> None:
        """Show the output that arrived within ``timeout``; restart children that died and whose
        backoff is over."""
        self._pump(timeout)
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            if child.process is None or child.process.poll() is None:
                continue
            self._drain(child)
            ran = now - child.started_at
            child.deaths_in_a_row = 1 if ran >= self.backoff.healthy_after else child.deaths_in_a_row + 1
            delay = self.backoff.delay(child.deaths_in_a_row)
            child.restart_at = now + delay
            self.say(
                self.name,
                f"{child.name} pid={child.process.pid} exited with {describe_exit(child.process.returncode)}; restarting in {delay:g} s",
            )

    # -- output --------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            self._read(key.fileobj, key.data)

    def _read(self, stream, child: Child) -> None:
        """Show the complete lines waiting on ``stream`` (one child's output; a restarted child
        has a new one, while its predecessor's may still be open in a process it forked)."""
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return
        pending = self._pending.pop(stream, b"")
        if not data:  # every writer has closed it: the child and anything it forked have exited
            self.selector.unregister(stream)
            stream.close()
            if pending:
                self.say(child.name, pending.decode(errors="replace"))
            return
        *lines, self._pending[stream] = (pending + data).split(b"\n")
        for line in lines:
            self.say(child.name, line.rstrip(b"\r").decode(errors="replace"))

    def _drain(self, child: Child) -> None:
        """Show what an exited child wrote last (its traceback, say) before reporting its exit."""
        stream = child.process.stdout
        while not stream.closed and select.select([stream], [], [], 0)[0]:
            self._read(stream, child)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """SIGTERM every running child, wait up to ``stop_grace`` seconds (showing their output),
        SIGKILL the ones still running. Returns the names of those killed."""
        running = [c for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for child in running:
            try:
                child.process.terminate()
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_grace
        while time.monotonic() < deadline and any(c.process.poll() is None for c in running):
            self._pump(0.02)
        killed = []
        for child in running:
            if child.process.poll() is None:
                self.say(self.name, f"{child.name} pid={child.process.pid} did not stop in time; killing it")
                child.process.kill()
                killed.append(child.name)
            child.process.wait()
        for child in self.children.values():
            if child.process is not None and not child.process.stdout.closed:
                self._drain(child)
        self.say(self.name, "stopped")
        return killed
