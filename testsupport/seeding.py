"""Data written straight into the services' tables, for tests and benchmarks that need a click path
with many readers and things without going through sign-ups one by one."""
from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import create_engine, text


def seed_click_path(url: str, readers: int, things: int) -> list[str]:
    """Readers with means and personal tokens, and things owned by someone else, written
    straight into the tables the click path reads. Returns the readers' tokens."""
    engine = create_engine(url)
    tokens = [f"bench-token-{i}-{uuid.uuid4().hex}" for i in range(readers)]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts.users (id, username, email, password_hash) "
                "SELECT i, 'reader' || i, 'reader' || i || '@bench.example', 'x' FROM generate_series(1, :n) i"
            ),
            {"n": readers + 1},
        )
        conn.execute(
            text("INSERT INTO accounts.access_tokens (token_hash, user_id, kind, scopes) VALUES (:h, :u, 'personal', 'flattr')"),
            [{"h": hashlib.sha256(t.encode()).hexdigest(), "u": i + 1} for i, t in enumerate(tokens)],
        )
        owner = readers + 1
        conn.execute(
            text(
                "INSERT INTO accounts.things (id, owner_id, url, title) "
                "SELECT i, :o, 'https://bench.example/' || i, 'Bench thing ' || i FROM generate_series(1, :n) i"
            ),
            {"o": owner, "n": things},
        )
        conn.execute(
            text(
                "INSERT INTO clicks.things (thing_id, owner_id, url, title, deleted, changed_at) "
                "SELECT i, :o, 'https://bench.example/' || i, 'Bench thing ' || i, false, now() FROM generate_series(1, :n) i"
            ),
            {"o": owner, "n": things},
        )
        conn.execute(
            text("INSERT INTO clicks.means (user_id, has_means, changed_at) SELECT i, true, now() FROM generate_series(1, :n) i"),
            {"n": readers},
        )
    engine.dispose()
    return tokens
