"""The benchmark's own database: on a PostgreSQL server (``DATABASE_URL``) a fresh database for
each run, dropped at the end, so runs start alike and nothing of the user's is touched; and,
where the server runs without autovacuum (this project's CI server does), a VACUUM between steps
in its place, so that dead rows from earlier steps do not slow the later ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from satkit.settings import sqlalchemy_url


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


@contextmanager
def fresh_database(url: str, prefix: str = "satlas_bench") -> Iterator[str]:
    """``url`` itself unless it is PostgreSQL; then the URL of a new database on its server
    (``prefix``_<8 hex>), dropped on exit. The tests' ``postgres_url`` is one of these too."""
    if not url.startswith(("postgresql", "postgres")):
        yield url
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _engine(url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def vacuum_if_no_autovacuum(url: str) -> bool:
    """VACUUM the job tables when the server does not; says whether it did."""
    if not url.startswith(("postgresql", "postgres")):
        return False
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SHOW autovacuum")).scalar() == "on":
                return False
            conn.execute(sa.text("VACUUM (ANALYZE) inference_results, submissions"))
            return True
    finally:
        engine.dispose()
