"""What a test sees of PostgreSQL's lock waits, to act at the moment a session is held up."""
from sqlalchemy import text


def waiting_on_locks(db) -> int:
    """Sessions of ``db``'s database waiting for a lock now (other tests' databases not counted)."""
    with db.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        ).scalar()
