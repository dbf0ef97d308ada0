"""postings keyed by account: one index instead of two

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Every query reads postings by account (statements, a user's records, in posting order) or all of
# them (the ledger check); none looks one up by its id alone. So the primary key is (account_id,
# id): it serves those reads as the account index did, and a settlement's hundred thousand postings
# each cost one index entry (and its WAL) instead of two. The id still comes from its sequence and
# orders an account's postings. About a tenth off the settlement's ledger step (bench-settlement).
BY_ACCOUNT = """
ALTER TABLE settlement.postings DROP CONSTRAINT postings_pkey;
DROP INDEX settlement.ix_settlement_postings_account_id;
ALTER TABLE settlement.postings ADD CONSTRAINT postings_pkey PRIMARY KEY (account_id, id);
"""

BY_ID = """
ALTER TABLE settlement.postings DROP CONSTRAINT postings_pkey;
ALTER TABLE settlement.postings ADD CONSTRAINT postings_pkey PRIMARY KEY (id);
CREATE INDEX ix_settlement_postings_account_id ON settlement.postings (account_id);
"""


def upgrade():
    op.execute(BY_ACCOUNT)


def downgrade():
    op.execute(BY_ID)
