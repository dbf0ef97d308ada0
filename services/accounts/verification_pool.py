"""The verification pool: ownership checks run here, never in an RPC worker.

``@verification_pool`` marks a service method that carries out one queued check per call and
returns whether there was one (``verifications.run_next``). The entrypoint keeps ``size`` loops
(``CLAIM_WORKERS``), each calling the method through the container (so dependencies and logging
work as for any worker), straight again after a check, or, when the queue was empty, after a
wake-up or a poll interval (the loops together look about once in ``POLL_SECONDS``). An RPC
that queues a check wakes the loops of its own process after its commit; checks queued by other
replicas are found by the polls.

The entrypoint names its worker setting (``worker_setting``): ``services.common.runner`` runs it
in a container of its own with that many workers, so checks never wait behind RPCs or events,
and never hold their workers.
"""
from __future__ import annotations

import threading

import eventlet
from eventlet.event import Event
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import Entrypoint

from services.common import settings

POLL_SECONDS = 1.0

# the wake-ups of every pool in this process (a process may run several containers)
_wake_ups: set = set()


def wake() -> None:
    """Tell this process's pools a check was queued (called after the queuing commit)."""
    for event in list(_wake_ups):
        event.set()


class VerificationPool(Entrypoint):
    worker_setting = "CLAIM_WORKERS"

    def setup(self):
        self.size = int(settings.setting(self.container.config, self.worker_setting))
        self._wake = threading.Event()
        self._running = False
        self._loops = []

    def start(self):
        self._running = True
        _wake_ups.add(self._wake)
        self._loops = [self.container.spawn_managed_thread(self._loop) for _ in range(self.size)]

    def _halt(self):
        self._running = False
        _wake_ups.discard(self._wake)
        self._wake.set()

    def stop(self):
        self._halt()
        for loop in self._loops:
            loop.wait()

    def kill(self):
        self._halt()
        for loop in self._loops:
            loop.kill()

    def _loop(self):
        while self._running:
            done = Event()

            def handle_result(worker_ctx, result, exc_info):
                done.send(bool(result) and exc_info is None)
                return result, exc_info

            try:
                self.container.spawn_worker(self, (), {}, handle_result=handle_result)
            except ContainerBeingKilled:
                return
            if not done.wait():
                # the loops' polls together come about once in POLL_SECONDS
                self._wake.wait(POLL_SECONDS * self.size)
                self._wake.clear()
            eventlet.sleep(0)


verification_pool = VerificationPool.decorator
