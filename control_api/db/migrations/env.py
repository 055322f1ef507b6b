"""Alembic environment: uses the connection handed in by control_api.db.migrate."""

from alembic import context

from control_api.db.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")

if connection is None:
    raise RuntimeError("run migrations through `openvisit migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
