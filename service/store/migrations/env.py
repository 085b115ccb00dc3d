"""Alembic's entry point for covreq's migrations: run on the connection service/store/migrate.py gives.

To add a migration (PAS tables, say): a new file in versions/ (script.py.mako is its template) whose
``down_revision`` is the newest one's ``revision``; mirror its tables in service/store/models.py.
"""
from __future__ import annotations

from alembic import context

from service.store.migrate import VERSION_TABLE
from service.store.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("covreq's migrations run through service.store.migrate.upgrade (covreq serve runs it at start)")
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
