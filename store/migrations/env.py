"""Alembic environment: runs on the connection handed in by store.migrate."""

from alembic import context

import store.mailboxes  # noqa: F401  (registers the IMAP tables on Base)
from store.models import Base
import store.rules  # noqa: F401  (registers the routing rule tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
