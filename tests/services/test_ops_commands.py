"""The operators' command line, run as an operator would."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[2]


def run_ops(database_url, *args):
    env = dict(os.environ, SETTLEMENT_DATABASE_URL=database_url, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "services.settlement.ops", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_ledger_check_command_reports_totals_and_exit_status(database_url, db):
    healthy = run_ops(database_url, "check")
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["ok"] is True
    with db.begin() as conn:
        conn.execute(text("INSERT INTO settlement.ledger_accounts (kind, owner_id) VALUES ('wallet', 1)"))
        conn.execute(text("ALTER TABLE settlement.ledger_accounts DISABLE TRIGGER ledger_balance_guard"))
        conn.execute(text("UPDATE settlement.ledger_accounts SET balance = 42"))
        conn.execute(text("ALTER TABLE settlement.ledger_accounts ENABLE TRIGGER ledger_balance_guard"))
    broken = run_ops(database_url, "check")
    assert broken.returncode == 1
    assert "BROKEN" in broken.stderr
    assert json.loads(broken.stdout)["totals"]["wallet"] == 42
