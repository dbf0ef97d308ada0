"""What the services wrote to their outboxes, checked against the event contracts
(``services/common/contracts``): the tests run this on every test database before dropping it."""
from __future__ import annotations

import jsonschema
from sqlalchemy import create_engine, text

from services.common import contracts

OUTBOXES = ("accounts.outbox", "clicks.outbox", "settlement.outbox")


def outbox_violations(url: str) -> list[str]:
    """One line per outbox row whose envelope does not fit its type's schema, or whose type and
    version have no schema at all."""
    found = []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for outbox in OUTBOXES:
                if conn.execute(text("SELECT to_regclass(:t)"), {"t": outbox}).scalar() is None:
                    continue
                for row in conn.execute(text(f"SELECT id, event_type, body FROM {outbox} ORDER BY id")):
                    try:
                        contracts.validate(row.body)
                    except contracts.NoSchema as exc:
                        found.append(f"{outbox} #{row.id} {row.event_type}: {exc}")
                    except jsonschema.ValidationError as exc:
                        where = "/".join(str(p) for p in exc.absolute_path) or "the envelope"
                        found.append(f"{outbox} #{row.id} {row.event_type}: {where}: {exc.message}")
    finally:
        engine.dispose()
    return found
