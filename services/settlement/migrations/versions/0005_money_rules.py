"""money rules in SQL: the charge, means, and each reader's share of each click

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The SQL twins of services/settlement/rules.py (property tests check that both agree), next to
# settlement.platform_fee and settlement.split_share of migration 0004. Each argument appears
# once in its body, so the planner inlines the function even when an argument is a subquery.
RULES = """
CREATE FUNCTION settlement.charge_amount(budget bigint, wallet bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT GREATEST(0, LEAST(coalesce(budget, 0), coalesce(wallet, 0))) $$;

CREATE FUNCTION settlement.has_means(budget bigint, wallet bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT coalesce(coalesce(wallet, 0) >= budget, false) $$;

-- Each click's share of its reader's period amount after the fee: the one place that turns a
-- click's position among its reader's clicks, their number and the amount into cents. The batch,
-- escrow releases and refunds, and statements all read shares from here.
CREATE VIEW settlement.reader_shares AS
    SELECT c.period, c.user_id, c.thing_id,
           settlement.split_share(ch.amount - ch.fee, c.clicks, c.rank, c.user_id) AS share
    FROM settlement.period_clicks c
    JOIN settlement.charges ch ON ch.period = c.period AND ch.user_id = c.user_id;
"""


def upgrade():
    op.execute(RULES)


def downgrade():
    op.execute("DROP VIEW IF EXISTS settlement.reader_shares")
    op.execute("DROP FUNCTION IF EXISTS settlement.has_means(bigint, bigint)")
    op.execute("DROP FUNCTION IF EXISTS settlement.charge_amount(bigint, bigint)")
