"""recording problems: a visit's recording marked incomplete for staff

A write error (disk full), a recording refused for lack of free space, or a segment recovered
after a crash (truncated) is listed on the visit, so staff reading visits and recordings see that
the recording is incomplete and why (R1).

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_problems', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('recording_problems')
