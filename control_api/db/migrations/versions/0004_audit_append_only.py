"""audit entries are append-only in the database too

The hash chain detects any change to the audit log; these triggers also prevent one through
ordinary SQL (an UPDATE or DELETE on audit_entries is refused). Someone with the rights to
drop the trigger can still change rows, and `openvisit audit verify` will then find it.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit_entries is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$;
        """)
        op.execute("""
            CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
        """)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_entries_no_{event.lower()} BEFORE {event} ON audit_entries
                BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
            """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION audit_entries_append_only()")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER audit_entries_no_{event}")
