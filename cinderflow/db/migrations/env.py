"""Alembic environment: our engine factory (SQLite pragmas, psycopg) and batch mode for SQLite."""

from alembic import context
from sqlmodel import SQLModel

import cinderflow.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from cinderflow.db.engine import make_engine

config = context.config
engine = make_engine(config.attributes["database_url"])
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
finally:
    engine.dispose()
