"""media nodes and room sessions: leases and connected time that survive a crash

A media node renews a lease by heartbeat; each room it runs (one per visit per node boot) is a
media session whose connected seconds (both parties present with media flowing) the heartbeat
carries. When a node's lease lapses, its live sessions are marked lost and the visit
`interrupted_at`: rejoinable until its end (S5), failed and credited if it never resumes (S6, M6).

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import control_api.db.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('media_nodes',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('started_at', control_api.db.types.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', control_api.db.types.UTCDateTime(), nullable=False),
    sa.Column('lost_at', control_api.db.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media_nodes'))
    )
    op.create_table('media_sessions',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('visit_id', sa.String(length=36), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', control_api.db.types.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', control_api.db.types.UTCDateTime(), nullable=False),
    sa.Column('connected_seconds', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_media_sessions_visit_id_visits'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media_sessions'))
    )
    with op.batch_alter_table('media_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_media_sessions_visit_id'), ['visit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_media_sessions_node_id'), ['node_id'], unique=False)
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interrupted_at', control_api.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('interrupted_at')
    op.drop_table('media_sessions')
    op.drop_table('media_nodes')
