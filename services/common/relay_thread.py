"""A relay that runs beside a nameko service in a background thread and is woken when a worker's
transaction commits something for it to send (the outbox's events, the mail queue's mails)."""
from __future__ import annotations

import threading

from nameko.extensions import DependencyProvider


class WokenRelay(DependencyProvider):
    """Subclasses set ``enabled`` in ``setup`` and write ``_run``, a loop while ``_running`` that
    waits on ``_wake`` between rounds; ``wake_after_commit(session)`` is for their dependencies."""

    def __init__(self):
        self._wake = threading.Event()
        self._running = False
        self._thread = None
        self.enabled = True

    def wake_after_commit(self, session) -> None:
        session.after_commit(self._wake.set)

    def start(self):
        if self.enabled:
            self._running = True
            self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.wait()

    def kill(self):
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.kill()

    def _run(self):
        raise NotImplementedError
