"""Alembic environment: the URL comes from the caller (orchestrator_svc.migrate) or DATABASE_URL."""

from alembic import context
from sqlalchemy import pool

from orchestrator_svc.db import Base, make_engine
from orchestrator_svc.settings import Settings
from satkit.settings import load

config = context.config
url = config.get_main_option("sqlalchemy.url") or load(Settings).database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = make_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=Base.metadata)
            with context.begin_transaction():
                context.run_migrations()
    else:
        context.configure(connection=connectable, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
