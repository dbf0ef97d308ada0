"""make dev's local SMTP server (``deploy.mailcatcher``) run by a test, and the mails it caught."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

from testsupport.devstack import ROOT
from testsupport.instances import free_port

LINK = re.compile(r"https?://\S+")


class Mailbox:
    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "Mailbox":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.mailcatcher", "--host", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.process.poll() is None, "the mail catcher did not start"
                time.sleep(0.05)
        raise AssertionError("the mail catcher did not listen in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def settings(self) -> dict:
        """The service settings that send mail here."""
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "MAIL_RELAY": "on"}

    def messages(self) -> list:
        if not self.folder.is_dir():
            return []
        return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(self.folder.glob("*.eml"))]

    def to(self, address: str, subject: str | None = None) -> list:
        return [
            m for m in self.messages()
            if address.lower() in m["To"].lower() and (subject is None or subject.lower() in m["Subject"].lower())
        ]

    def wait_for(self, address: str, subject: str | None = None, timeout: float = 15.0, count: int = 1) -> list:
        deadline = time.monotonic() + timeout
        while True:
            found = self.to(address, subject)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"no mail {subject!r} to {address}; caught: {[(m['To'], m['Subject']) for m in self.messages()]}"
                return found
            time.sleep(0.1)


def body(message) -> str:
    return message.get_body(("plain",)).get_content()


def link(message, path_part: str) -> str:
    """The first link in the mail whose address contains ``path_part``."""
    for found in LINK.findall(body(message)):
        if path_part in found:
            return found
    raise AssertionError(f"no link with {path_part!r} in {body(message)!r}")
