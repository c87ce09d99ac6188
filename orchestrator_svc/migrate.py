"""Apply the Alembic migrations: at orchestrator start-up, or `python -m orchestrator_svc.migrate`."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.pool import NullPool

from orchestrator_svc import db

from orchestrator_svc.settings import Settings
from satkit.settings import load

HERE = Path(__file__).resolve().parent
# Replicas starting together would both create the tables: on PostgreSQL they take turns.
LOCK_KEY = 0x5A7145


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), "head")
        return
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})  # until this session ends
            conn.commit()
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
    finally:
        engine.dispose()


if __name__ == "__main__":
    upgrade(load(Settings).database_url)
