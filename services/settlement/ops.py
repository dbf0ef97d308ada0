"""Operator commands of the settlement service.

    python -m services.settlement.ops check     # the ledger invariants; exit status 1 if broken

Reads the settlement database directly (``SETTLEMENT_DATABASE_URL``), so it works while the
services are down.
"""
from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy.orm import Session

from services.common import settings
from services.common.db import engine_for
from services.settlement import ledger


def check(url: str) -> int:
    with Session(engine_for(url)) as session:
        result = ledger.check(session)
    print(json.dumps(result, indent=2))
    if result["ok"]:
        print("ledger: all invariants hold", file=sys.stderr)
        return 0
    print("ledger: BROKEN: " + "; ".join(result["failures"]), file=sys.stderr)
    return 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.settlement.ops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check the ledger's invariants")
    args = parser.parse_args(argv)
    url = settings.get("SETTLEMENT_DATABASE_URL")
    if args.command == "check":
        return check(url)
    return 2


if __name__ == "__main__":
    sys.exit(main())
