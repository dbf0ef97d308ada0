"""clicks partitioned by period: one partition per period, settled ones archived and dropped

The old table's rows move into the partitioned table in this migration's transaction (the
clicks service is stopped while it migrates; a month of clicks moves at about a million rows a
few seconds). Ids keep their sequence. The unique index of a partitioned table must hold the
partition key, so "one click per request" is no longer a unique index: a redelivered request is
recognised by ``clicks_by_request`` (an index on every partition) as before, and a second click of
the same request is refused by ``clicks_once_per_period`` (the same request is the same reader and
thing).

Revision ID: 0005
Revises: 0004
"""
import re

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('clicks.clicks_id_seq'),
    period_id varchar(16) NOT NULL,
    user_id bigint NOT NULL,
    thing_id bigint NOT NULL,
    request_id uuid NOT NULL,
    source varchar(12) NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now()
"""

_INDEXES = (
    "CREATE UNIQUE INDEX clicks_once_per_period ON clicks.clicks (period_id, user_id, thing_id)",
    "CREATE INDEX clicks_by_request ON clicks.clicks (request_id)",
    "CREATE INDEX clicks_by_thing ON clicks.clicks (thing_id, id)",
    "CREATE INDEX clicks_by_user ON clicks.clicks (user_id, id)",
)


def _partition_name(period: str) -> str:
    # as services.clicks.partitions.partition_name; a migration does not import service code,
    # which may change after it
    return "clicks_" + re.sub(r"[^0-9]", "_", period)


def upgrade():
    op.execute("ALTER TABLE clicks.clicks RENAME TO clicks_unpartitioned")
    for index in ("clicks_pkey", "clicks_once_per_period", "clicks_one_per_request", "clicks_by_thing", "clicks_by_user"):
        op.execute(f"ALTER INDEX clicks.{index} RENAME TO {index}_unpartitioned")
    op.execute(f"CREATE TABLE clicks.clicks ({_COLUMNS}) PARTITION BY LIST (period_id)")
    op.add_column("periods", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True), schema="clicks")
    op.add_column("periods", sa.Column("archived_clicks", sa.BigInteger(), nullable=True), schema="clicks")

    bind = op.get_bind()
    periods = bind.execute(
        sa.text("SELECT id FROM clicks.periods UNION SELECT DISTINCT period_id FROM clicks.clicks_unpartitioned")
    ).scalars()
    for period in periods:
        name = _partition_name(period)
        op.execute(f"CREATE TABLE clicks.{name} PARTITION OF clicks.clicks FOR VALUES IN ('{period}')")
    op.execute("INSERT INTO clicks.clicks SELECT id, period_id, user_id, thing_id, request_id, source, created_at FROM clicks.clicks_unpartitioned")
    # the indexes after the rows: built once from sorted data, not row by row
    op.execute("ALTER TABLE clicks.clicks ADD CONSTRAINT clicks_pkey PRIMARY KEY (id, period_id)")
    for index in _INDEXES:
        op.execute(index)
    op.execute("ALTER SEQUENCE clicks.clicks_id_seq OWNED BY clicks.clicks.id")
    op.execute("DROP TABLE clicks.clicks_unpartitioned")


def downgrade():
    archived = op.get_bind().execute(sa.text("SELECT count(*) FROM clicks.periods WHERE archived_at IS NOT NULL")).scalar()
    if archived:
        raise RuntimeError(f"{archived} periods' clicks were archived and dropped; load them back before downgrading")
    op.execute("ALTER TABLE clicks.clicks RENAME TO clicks_partitioned")
    for index in ("clicks_pkey", "clicks_once_per_period", "clicks_by_request", "clicks_by_thing", "clicks_by_user"):
        op.execute(f"ALTER INDEX clicks.{index} RENAME TO {index}_partitioned")
    op.execute(f"CREATE TABLE clicks.clicks ({_COLUMNS})")
    op.execute("INSERT INTO clicks.clicks SELECT id, period_id, user_id, thing_id, request_id, source, created_at FROM clicks.clicks_partitioned")
    op.execute("ALTER TABLE clicks.clicks ADD CONSTRAINT clicks_pkey PRIMARY KEY (id)")
    op.execute("ALTER SEQUENCE clicks.clicks_id_seq OWNED BY clicks.clicks.id")
    op.execute("DROP TABLE clicks.clicks_partitioned CASCADE")
    op.execute("CREATE UNIQUE INDEX clicks_once_per_period ON clicks.clicks (period_id, user_id, thing_id)")
    op.execute("CREATE UNIQUE INDEX clicks_one_per_request ON clicks.clicks (request_id)")
    op.execute("CREATE INDEX clicks_by_thing ON clicks.clicks (thing_id, id)")
    op.execute("CREATE INDEX clicks_by_user ON clicks.clicks (user_id, id)")
    op.drop_column("periods", "archived_clicks", schema="clicks")
    op.drop_column("periods", "archived_at", schema="clicks")
