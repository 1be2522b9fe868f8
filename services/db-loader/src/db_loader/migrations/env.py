"""Alembic environment: runs on the connection that :mod:`db_loader.migrate` hands over.

Migrations are only ever applied programmatically (``cardstream migrate`` and
``db_loader.migrate.bootstrap``), already connected as the schema owner, so there is no
URL in an ini file and no offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from db_loader.models import SCHEMA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    version_table_schema=SCHEMA,
    include_schemas=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
