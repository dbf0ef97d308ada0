"""A service process whose container dies exits (non-zero), so that its runner starts a new one.

A nameko container kills itself when one of its threads fails (a broker connection reset under
an ack, a database gone mid-rollback); the process used to live on, deaf, answering nothing.
"""
import os
import subprocess
import sys
import textwrap

from testsupport.devstack import ROOT

DYING_SERVICE = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    from nameko.extensions import DependencyProvider
    from nameko.rpc import rpc
    from services.common.runner import main

    class FailsSoon(DependencyProvider):
        def start(self):
            def fail():
                eventlet.sleep(1)
                raise ConnectionResetError(104, "Connection reset by peer")
            self.container.spawn_managed_thread(fail)

    class DyingService:
        name = "dying_test_service"
        trouble = FailsSoon()

        @rpc
        def ping(self):
            return "pong"

    main("dying", [DyingService], schema="none")
    """
)


def test_a_service_whose_container_dies_exits_so_it_is_restarted(amqp_uri):
    env = dict(os.environ, AMQP_URI=amqp_uri, LOG_LEVEL="INFO")
    process = subprocess.Popen([sys.executable, "-c", DYING_SERVICE], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert "stopped working (ConnectionResetError" in output, output
    assert "exiting so that it is restarted" in output



SEVERAL_TRIPS = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    from services.common.shutdown import StopSignals

    signals = StopSignals()
    for _ in range(3):  # every container of a process ends together when it stops
        eventlet.spawn_n(signals.trip)
    print("woke with", signals.wait())
    eventlet.sleep(0.1)  # the other trips run
    """
)


def test_parts_of_a_process_ending_together_wake_its_stop_once_without_an_error():
    # each container of a service process wakes the stop wait when it ends; they used to write
    # its pipe at the same moment, and eventlet printed a RuntimeError among the JSON log lines
    result = subprocess.run([sys.executable, "-c", SEVERAL_TRIPS], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "woke with 0\n"
    assert "Traceback" not in result.stderr, result.stderr
