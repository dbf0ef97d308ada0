"""Operator commands of the settlement service.

    python -m services.settlement.ops check                 # the ledger invariants; exit status 1 if broken
    python -m services.settlement.ops check-deposits        # deposits against the provider's records; 1 if any differ
    python -m services.settlement.ops status PERIOD         # a settlement's state, step and totals
    python -m services.settlement.ops settle PERIOD         # run or finish a settlement, with progress
    python -m services.settlement.ops refund-escrow [--older-than-days N]   # refund stale escrow now

``check``, ``check-deposits`` and ``status`` read the settlement database directly
(``SETTLEMENT_DATABASE_URL``, and the provider named by ``PAYMENT_PROVIDER``), so they work while
the services are down. ``settle`` also asks the clicks and accounts services over
RabbitMQ (``AMQP_URI``) for the period's clicks and the owners of things settlement has not
heard of, exactly as the batch runner does; ``refund-escrow`` asks accounts whether a stale thing
was claimed a moment ago.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from sqlalchemy.orm import Session

from services.common import settings
from services.common.db import engine_for
from services.common.outbox import TableRecorder
from services.settlement import batch, deposits, escrow, ledger, rules
from services.settlement.models import outbox
from services.settlement.providers import provider_for


def check(url: str) -> int:
    with Session(engine_for(url)) as session:
        result = ledger.check(session)
    print(json.dumps(result, indent=2))
    if result["ok"]:
        print("ledger: all invariants hold", file=sys.stderr)
        return 0
    print("ledger: BROKEN: " + "; ".join(result["failures"]), file=sys.stderr)
    return 1


def check_deposits(url: str, provider_name: str) -> int:
    with Session(engine_for(url)) as session:
        result = deposits.compare_with_provider(session, provider_for(provider_name, url))
    print(json.dumps(result, indent=2))
    if result["ok"]:
        print(f"deposits: all {result['deposits']} agree with the provider", file=sys.stderr)
        return 0
    print(f"deposits: {result['differences']} DIFFER from the provider's records", file=sys.stderr)
    return 1


def status(url: str, period: str) -> int:
    with Session(engine_for(url)) as session:
        found = batch.status(session, period)
    if found is None:
        print(f"no settlement of {period}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2))
    return 0 if found["state"] != "failed" else 1


class ProgressLine:
    """One line on stderr that redraws itself: step, count, percentage and rate."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, step: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        share = f"{100 * done / total:5.1f}%" if total else "  -  "
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 and step == "importing" else ""
        end = "\n" if step == "posted" else ""
        self.stream.write(f"\r{step:<10} {done:>12,} of {total:<12,} {share} {rate:<14} {elapsed:6.1f} s{end}")
        self.stream.flush()


def settle(url: str, amqp_uri: str, period: str) -> int:
    from nameko.standalone.rpc import ClusterRpcProxy

    engine = engine_for(url)
    with ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as cluster:
        with Session(engine) as session:
            if batch.status(session, period) is None:
                sealed = next((p for p in cluster.clicks.list_periods() if p["id"] == period), None)
                if sealed is None or sealed["state"] != "sealed":
                    print(f"{period} is not a sealed period", file=sys.stderr)
                    return 1
                batch.begin(
                    session, period, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sealed["sealed_at"])), sealed["clicks"],
                    rules.settlement_policy(settings.get("SETTLEMENT_NO_CLICKS_POLICY")),
                    rules.fee_basis_points(settings.get("SETTLEMENT_FEE_BPS")),
                )
                session.commit()
        runner = batch.Batch(
            engine,
            batch.Sources(export_clicks=cluster.clicks.export_clicks, thing_owners=cluster.accounts.thing_owners),
            chunk_rows=settings.get_int("SETTLEMENT_CHUNK_ROWS"),
            progress=ProgressLine(),
        )
        try:
            result = runner.run(period)
        except batch.SettlementFailed as exc:
            print(f"\nsettlement of {period} FAILED: {exc}", file=sys.stderr)
            return 1
    if result is None:
        print(f"another settlement batch is running; {period} waits for it", file=sys.stderr)
        return 3
    print(json.dumps(result, indent=2))
    return 0


def refund_escrow(url: str, amqp_uri: str, days: int) -> int:
    from nameko.standalone.rpc import ClusterRpcProxy

    with Session(engine_for(url)) as session, ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}) as cluster:
        escrow.learn_owners_of_stale(session, cluster.accounts.thing_owners, days)
        escrow.lock(session)
        refunded = escrow.refund_stale(session, TableRecorder(outbox), days)
        session.commit()
    print(json.dumps({"refunded": refunded, "count": len(refunded), "amount": sum(r["amount"] for r in refunded)}, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.settlement.ops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check the ledger's invariants")
    commands.add_parser("check-deposits", help="compare the deposits with the payment provider's records")
    commands.add_parser("status", help="a settlement's state and totals").add_argument("period")
    commands.add_parser("settle", help="run or finish the settlement of a sealed period").add_argument("period")
    refund = commands.add_parser("refund-escrow", help="refund escrow older than the hold period to the readers")
    refund.add_argument("--older-than-days", type=int, default=None, help="default: ESCROW_HOLD_DAYS")
    args = parser.parse_args(argv)
    url = settings.get("SETTLEMENT_DATABASE_URL")
    if args.command == "check":
        return check(url)
    if args.command == "check-deposits":
        return check_deposits(url, settings.get("PAYMENT_PROVIDER"))
    if args.command == "status":
        return status(url, args.period)
    if args.command == "settle":
        return settle(url, settings.get("AMQP_URI"), args.period)
    if args.command == "refund-escrow":
        days = args.older_than_days if args.older_than_days is not None else settings.get_int("ESCROW_HOLD_DAYS")
        return refund_escrow(url, settings.get("AMQP_URI"), days)
    return 2


if __name__ == "__main__":
    sys.exit(main())
