"""Alembic migrations, one schema per service.

Each service keeps its migrations in ``services/<service>/migrations`` and its alembic version
table inside its own schema. ``upgrade`` holds a PostgreSQL advisory lock so several replicas
starting together migrate once. ``python -m services.common.migrate accounts`` is the one-shot
command.
"""
from __future__ import annotations

import sys
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.common import settings

SERVICES_DIR = Path(__file__).resolve().parent.parent

URL_KEYS = {
    "accounts": "ACCOUNTS_DATABASE_URL",
    "clicks": "CLICKS_DATABASE_URL",
    "settlement": "SETTLEMENT_DATABASE_URL",
}


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["schema"] = service
    return cfg


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (development and tests)."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": parsed.database}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def upgrade(service: str, url: str | None = None, revision: str = "head") -> None:
    """Migrate ``service``'s schema up to ``revision``; ``downgrade`` goes the other way (tests
    and benchmarks of a migration start from the revision before it)."""
    _migrate(service, url, revision, command.upgrade)


def downgrade(service: str, url: str | None, revision: str) -> None:
    _migrate(service, url, revision, command.downgrade)


def _migrate(service: str, url: str | None, revision: str, step) -> None:
    url = url or settings.get(URL_KEYS[service])
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"migrate:{service}"})
            try:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
                conn.commit()
                cfg = alembic_config(service, url)
                cfg.attributes["connection"] = conn
                step(cfg, revision)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"migrate:{service}"})
                conn.commit()
    finally:
        engine.dispose()


def run_env(target_metadata) -> None:
    """Body of every service's ``migrations/env.py`` (online mode only)."""
    cfg = context.config
    schema = cfg.attributes["schema"]
    connection = cfg.attributes.get("connection")
    owned = connection is None
    if owned:
        engine = create_engine(cfg.get_main_option("sqlalchemy.url"))
        connection = engine.connect()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, parent: type_ != "schema" or name == schema,
        )
        with context.begin_transaction():
            context.run_migrations()
        if owned:
            connection.commit()
    finally:
        if owned:
            connection.close()


if __name__ == "__main__":
    names = sys.argv[1:] or list(URL_KEYS)
    for name in names:
        url = settings.get(URL_KEYS[name])
        ensure_database(url)
        upgrade(name, url)
        print(f"{name}: migrated")
