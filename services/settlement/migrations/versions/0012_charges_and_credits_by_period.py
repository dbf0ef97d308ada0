"""charges and credits partitioned by period: a settlement writes its rows, then indexes them

A settlement writes a hundred thousand charges and tens of thousands of credits. Inserted into
indexed tables, each row cost an entry in every index, one at a time (about a microsecond each:
the charges' primary key alone took a tenth of a second of a million-click batch). Now each period
has a partition of its own, which the batch fills while it is still a plain table and then
attaches: PostgreSQL builds the partition's indexes by sorting the rows once, and the partition's
CHECK on the period spares it a scan on attaching.

Existing rows move into one partition per period in this migration's transaction (a period of
100,000 charges and 20,000 credits took 0.75 s here). Upgrade with the settlement processes
stopped: each migrates when it starts, and a batch of the old code still running would wait for
this transaction, then fail (no partition for its period) and be retried by the new one. The view ``reader_shares`` reads charges, so it is redefined, from its own text, on the new
table. A charge also names the wallet it was taken from (filled in here for settled periods).

Revision ID: 0012
Revises: 0011
"""
import re

from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# the indexes other than the primary keys, as migration 0004 made them
_INDEXES = {
    "charges": (),
    "credits": (
        "CREATE INDEX credits_by_owner ON settlement.credits (owner_id, period)",
        "CREATE INDEX credits_held ON settlement.credits (thing_id) WHERE state = 'held'",
    ),
}
_KEYS = {"charges": "(period, user_id)", "credits": "(period, thing_id)"}
# A statement that joins a period's partition of one with another table is estimated from the
# partitioned table's statistics as a whole. Declared unique there, as they are within a period
# (the batch's statements read one period); without it a join of a million clicks with their
# charges was planned as if each charge matched hundreds of them (a nested loop, 4x slower).
# Reads across every period (a user's records) are then estimated at one row a reader or thing:
# their plans, not their results, depend on it.
_UNIQUE_IN_A_PERIOD = {"charges": "user_id", "credits": "thing_id"}


_PERIOD_ID = re.compile(r"[0-9]{4}-[0-9]{2}(\.[0-9]{1,8})?")


def _partition_name(table: str, period: str) -> str:
    # as services.settlement.batch.period_table; a migration does not import service code,
    # which may change after it. The period goes into SQL as a literal: only a period id may.
    if not _PERIOD_ID.fullmatch(period):
        raise RuntimeError(f"settlement.{table} holds a row of period {period!r}, which is not a period id")
    return f"{table}_" + re.sub(r"[^0-9]", "_", period)


def _view_text() -> str:
    return op.get_bind().execute(sa.text("SELECT pg_get_viewdef('settlement.reader_shares'::regclass)")).scalar()


def _rebuild(table: str, partitioned: bool) -> None:
    """Move ``table``'s rows into a new table of the same columns and constraints: partitioned by
    period (a partition per period present) or not; its keys and indexes built after the rows."""
    suffix = "unpartitioned" if partitioned else "partitioned"
    old = f"{table}_{suffix}"
    op.execute(f"ALTER TABLE settlement.{table} RENAME TO {old}")
    for index in [f"{table}_pkey"] + [statement.split()[2] for statement in _INDEXES[table]]:
        op.execute(f"ALTER INDEX settlement.{index} RENAME TO {index}_{suffix}")
    partitioning = " PARTITION BY LIST (period)" if partitioned else ""
    op.execute(f"CREATE TABLE settlement.{table} (LIKE settlement.{old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS){partitioning}")
    if partitioned:
        periods = op.get_bind().execute(sa.text(f"SELECT DISTINCT period FROM settlement.{old} ORDER BY period")).scalars().all()
        for period in periods:
            op.execute(f"CREATE TABLE settlement.{_partition_name(table, period)} PARTITION OF settlement.{table} FOR VALUES IN ('{period}')")
    op.execute(f"INSERT INTO settlement.{table} SELECT * FROM settlement.{old}")
    op.execute(f"ALTER TABLE settlement.{table} ADD CONSTRAINT {table}_pkey PRIMARY KEY {_KEYS[table]}")
    for index in _INDEXES[table]:
        op.execute(index)
    if partitioned:
        op.execute(f"ALTER TABLE settlement.{table} ALTER COLUMN {_UNIQUE_IN_A_PERIOD[table]} SET (n_distinct_inherited = -1)")
        # PostgreSQL never gathers a partitioned table's statistics by itself; the batch does
        # when there are none (on the first period's partition)
        op.execute(f"ANALYZE settlement.{table}")


def _move(partitioned: bool) -> None:
    view = _view_text()
    for table in ("charges", "credits"):
        _rebuild(table, partitioned)
    op.execute(f"CREATE OR REPLACE VIEW settlement.reader_shares AS {view}")
    suffix = "unpartitioned" if partitioned else "partitioned"
    for table in ("charges", "credits"):
        op.execute(f"DROP TABLE settlement.{table}_{suffix}")


# A charge names the wallet it is taken from, as the batch found it when it read the balance:
# the ledger's wallet debits are then a scan of the charges, not a second join with the wallets
# (the postings' SELECT 0.09 s instead of 0.20 s at a million clicks).
WALLET_OF_A_CHARGE = """
ALTER TABLE settlement.charges ADD COLUMN wallet_id bigint;
UPDATE settlement.charges ch SET wallet_id = w.id FROM settlement.ledger_accounts w WHERE w.kind = 'wallet' AND w.owner_id = ch.user_id;
ALTER TABLE settlement.charges ADD CONSTRAINT charged_from_a_wallet CHECK (amount = 0 OR wallet_id IS NOT NULL);
"""


def upgrade():
    _move(partitioned=True)
    op.execute(WALLET_OF_A_CHARGE)


def downgrade():
    op.execute("ALTER TABLE settlement.charges DROP COLUMN wallet_id")
    _move(partitioned=False)
