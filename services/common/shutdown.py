"""A nameko service process stops as soon as it is told to, and cleanly: well within the 3 s that
``make dev``, compose and Kubernetes give it before SIGKILL.

Two waits made a stop slow, both invisible in a single test:

- The signal. A Python signal handler runs in whatever green thread is current, usually the
  hub, sleeping in ``epoll`` until its next timer; waking the main green thread from there
  only takes effect when the hub next wakes on its own (up to a second later, with kombu's
  waits). ``StopSignals`` has the kernel write to a pipe the hub watches, so the hub wakes
  at once.
- kombu's consumer loop. nameko's queue consumer drops a consumer (as each entrypoint stops)
  and notices that it should stop only between waits on the broker, and kombu waits up to
  ``safety_interval``, one second by default: up to two seconds per container before the stop
  even reaches the workers. ``stop_consumers_promptly`` makes that wait 0.1 s; an idle
  consumer pays for it with ten empty polls a second, which costs nothing measurable.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import eventlet
from eventlet.hubs import trampoline
from eventlet.patcher import original

CONSUMER_WAIT_SECONDS = 0.1
# the pipe's ends are non-blocking, so the real calls never wait; eventlet's green ones would hand
# each write to the hub first, and two parts of a process tripping at once (every container ends
# when the process stops) made it refuse the second as a "simultaneous write"
_os = original("os")


class StopSignals:
    """Catches ``signals`` from now on; ``wait()`` blocks the calling green thread until one
    arrives (or has arrived) and returns its number."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.received: list[int] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        for signum in self.signals:
            signal.signal(signum, self._handle)
        # the C-level handler writes the signal's number to this pipe, which the hub watches
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def _handle(self, signum, frame):
        self.received.append(signum)

    def trip(self) -> None:
        """Wake ``wait()`` without a signal (it then returns 0): a part of the process died."""
        self.received.append(0)
        try:
            _os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass

    def wait(self) -> int:
        while not self.received:
            trampoline(self._read_fd, read=True)
            try:
                _os.read(self._read_fd, 64)  # the Python handler has run by now, or runs next
            except BlockingIOError:
                pass
            eventlet.sleep(0)
        return self.received[0]


def stop_consumers_promptly() -> None:
    """Make nameko's queue consumers wait at most ``CONSUMER_WAIT_SECONDS`` on the broker between
    looking at their stop requests (process-wide; call once before starting the services)."""
    from kombu.mixins import ConsumerMixin
    from nameko.messaging import QueueConsumer

    if getattr(QueueConsumer.run, "prompt_stop", False):
        return

    def run(self, _tokens=1, **kwargs):
        kwargs.setdefault("safety_interval", CONSUMER_WAIT_SECONDS)
        return ConsumerMixin.run(self, _tokens, **kwargs)

    run.prompt_stop = True
    QueueConsumer.run = run


def stop_within(runner, seconds: float) -> bool:
    """``runner.stop()`` (in-flight workers finish, unacknowledged messages go back to the
    broker); ``runner.kill()`` if that takes longer than ``seconds``. True if it stopped."""
    try:
        with eventlet.Timeout(seconds):
            runner.stop()
        return True
    except eventlet.Timeout:
        runner.kill()
        return False


def exit_now(status: int = 0) -> None:
    """End the process once it has stopped cleanly, without the interpreter's teardown: tearing
    down a hundred modules and every green thread is up to a second of CPU for seven processes
    at once on a busy machine, and releases nothing the stop has not closed already."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
