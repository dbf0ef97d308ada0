"""A short ``make soak`` in the suite: 40 seconds of mixed traffic with random SIGKILLs of the
platform's processes and one restart each of RabbitMQ and PostgreSQL (private instances), then
the exact accounting of ``bench/soak.py``. ``pytest -m soak`` runs only this;
``SOAK_SECONDS`` makes it longer."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.soak]


def test_a_minute_of_traffic_and_faults_loses_doubles_and_hangs_nothing(tmp_path):
    seconds = os.environ.get("SOAK_SECONDS", "40")
    env = dict(os.environ, SOAK_SECONDS=seconds, SOAK_DIR=str(tmp_path / "soak"), PYTHONWARNINGS="ignore")
    log = tmp_path / "soak.out"
    with open(log, "w") as out:
        # its own process: the soak uses threads and must not run under this process's eventlet
        result = subprocess.run([sys.executable, "-m", "bench.soak"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=float(seconds) + 540)
    output = log.read_text()
    summary = [line for line in output.splitlines() if line.startswith("soak PASS") or line.startswith("soak FAIL")]
    print(summary[-1] if summary else output[-3000:])
    assert result.returncode == 0 and summary and summary[-1].startswith("soak PASS"), output[-12000:]
