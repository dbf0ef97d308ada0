"""``make dev``'s local SMTP server: it takes every mail the platform sends and writes it to
``MAIL_CATCHER_DIR`` (default ``var/mail``) as an ``.eml`` file, one log line each (the
platform's log format: ``LOG_FORMAT``), with the links in it, so a confirmation or reset link can
be opened from the terminal::

         mail | 2026-11-24 10:15:00,001 mail INFO mailcatcher: to alice@example.com: Confirm your email address
                (var/mail/20261124-101500-0001.eml) http://127.0.0.1:8000/email/confirm/Xy...

It
delivers nothing anywhere. ``python -m deploy.mailcatcher [--host H] [--port P] [--dir D]``;
the defaults are ``SMTP_HOST``, ``SMTP_PORT`` and ``MAIL_CATCHER_DIR``. Tests run it too.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import re
import signal
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller

from services.common import logs, settings

LINK = re.compile(r"https?://\S+")
log = logging.getLogger("mailcatcher")


class Catcher:
    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._numbers):04d}.eml"
        path = self.folder / name
        # written whole under a temporary name first, so a reader never sees half a mail
        partial = path.with_suffix(".part")
        partial.write_bytes(envelope.original_content or envelope.content)
        partial.rename(path)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        body = mail.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        log.info("to %s: %s (%s) %s", ", ".join(envelope.rcpt_tos), mail["Subject"], path, " ".join(LINK.findall(text)))
        return "250 Message accepted"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a local SMTP server that writes every mail to a folder")
    parser.add_argument("--host", default=settings.get("SMTP_HOST"))
    parser.add_argument("--port", type=int, default=int(settings.get("SMTP_PORT")))
    parser.add_argument("--dir", default=settings.get("MAIL_CATCHER_DIR"))
    args = parser.parse_args(argv)
    logs.configure("mail")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's line per SMTP command
    controller = Controller(Catcher(Path(args.dir)), hostname=args.host, port=args.port)
    controller.start()
    log.info("SMTP on %s:%s, mails in %s", args.host, args.port, args.dir)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
