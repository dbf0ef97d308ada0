"""The README's walk-throughs, pasted into bash as written, against ``make dev``: a first
session, an operator's adjustment and payout, and a period end to end with a claimed escrow.
Only the gateway's port (and carol's page server's) differ from the text."""
import json
import os
import re
import signal
import subprocess

from testsupport.devstack import DEV_ADMIN_TOKEN, ROOT, wait_ready
from testsupport.instances import free_port

FIRST_BLOCK = "A first session over HTTP"


def walkthrough_script(base_port: int, page_port: int) -> str:
    readme = (ROOT / "README.md").read_text()
    text = readme[readme.index(FIRST_BLOCK):]
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)[:3]
    assert len(blocks) == 3 and "periods/close" in blocks[2], "the README's three walk-throughs moved"
    script = "\n".join(blocks)
    return script.replace("127.0.0.1:8000", f"127.0.0.1:{base_port}").replace("8001", str(page_port))


def json_answers(output: str) -> list:
    """Every JSON object in the output (curl prints answers back to back, some without a newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := output.find("{", at)) != -1:
        try:
            value, end = decoder.raw_decode(output, at)
        except json.JSONDecodeError:
            at += 1
            continue
        found.append(value)
        at = end
    return found


def test_the_readme_walkthroughs_work_as_written(dev_stack, tmp_path):
    process, base, log = dev_stack
    wait_ready(process, base, log)
    script = walkthrough_script(int(base.rsplit(":", 1)[1]), free_port())
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=dict(os.environ, FLATTR_ADMIN_TOKEN=DEV_ADMIN_TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )
    try:
        output, _ = shell.communicate(timeout=120)
    finally:
        try:
            os.killpg(shell.pid, signal.SIGKILL)  # carol's page server
        except ProcessLookupError:
            pass
    assert shell.returncode == 0, output
    answers = json_answers(output)
    statement = next(a for a in answers if "spent" in a)
    assert statement["charged"]["amount"] == 1000 and statement["charged"]["fee"] == 100
    assert sorted(line["amount"] for line in statement["spent"]) == [450, 450]
    claimed = next(a for a in answers if a.get("message") == "ok" and "claimed" in a.get("description", ""))
    assert claimed["thing"]["owner"]["username"] == "carol"
    assert answers[-1]["balance"] == 450, answers[-1]  # carol's revenue: the share that waited in escrow
