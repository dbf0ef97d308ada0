"""The browser journey (``tests/browser/journey.py``) against the whole platform: every service,
a click worker, the gateway and a real SMTP server. The screenshots go to ``artifacts/screenshots``
(CI keeps them), and axe-core must find no serious or critical violation on any page."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import eventlet
import pytest

from testsupport.mailbox import Mailbox
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def platform(start_services, start_click_worker, gateway_factory, tmp_path):
    from services.accounts.service import AccountsService
    from services.clicks.service import ClicksService
    from services.settlement.batch_service import SettlementBatchService
    from services.settlement.payouts import PayoutsService
    from services.settlement.service import SettlementService

    mailbox = Mailbox(tmp_path / "mail").start()
    start_services(AccountsService, ClicksService, SettlementService, PayoutsService, SettlementBatchService, **mailbox.settings())
    start_click_worker()
    yield gateway_factory(), mailbox
    mailbox.stop()


def test_the_whole_journey_in_a_browser(platform, tmp_path):
    assert AXE.is_file(), "axe-core is missing: run make install (npm ci in tests/browser)"
    base, mailbox = platform
    shutil.rmtree(SHOTS, ignore_errors=True)
    report = tmp_path / "journey.json"
    env = dict(os.environ, JOURNEY_BASE=base, JOURNEY_MAIL_DIR=str(mailbox.folder), JOURNEY_ADMIN_TOKEN=ADMIN_TOKEN,
               JOURNEY_SHOTS=str(SHOTS), JOURNEY_AXE=str(AXE), JOURNEY_REPORT=str(report))
    journey = subprocess.Popen([sys.executable, str(ROOT / "tests" / "browser" / "journey.py")], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    while journey.poll() is None:  # the gateway under test serves from this process meanwhile
        assert time.monotonic() - started < 180, "the journey took more than 3 minutes"
        eventlet.sleep(0.2)
    output = journey.stdout.read().decode(errors="replace")
    result = json.loads(report.read_text()) if report.exists() else {"error": output}
    assert journey.returncode == 0 and result["error"] is None, result["error"] or output
    assert result["violations"] == [], json.dumps(result["violations"], indent=2)
    names = {p["name"] for p in result["pages"]}
    assert {"home", "signup", "wallet", "flattr-window", "flattrs", "statement", "dashboard", "dashboard-paid"} <= names
    assert len(list(SHOTS.glob("*-phone.png"))) == len(list(SHOTS.glob("*-desktop.png"))) == len(result["pages"])
    lesser = sorted({v for p in result["pages"] for v in p["lesser"]})
    print(f"journey: {result['seconds']} s, {len(result['pages'])} pages; minor or moderate axe findings: {lesser or 'none'}")
