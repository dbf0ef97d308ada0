"""Test databases: each test gets its own, cloned from a template migrated once per session."""
from __future__ import annotations

import contextlib
import os
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.common.db import dispose_engines


def admin_engine(infra):
    return create_engine(infra.admin_db_url, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def cloned_database(infra, template_database):
    """A database of its own, cloned from the migrated template; dropped afterwards."""
    name = f"flattr_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:12]}"
    admin = admin_engine(infra)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    try:
        yield make_url(infra.admin_db_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
