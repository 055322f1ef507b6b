"""credit draws: which credit lots paid for a visit

M5: credit given back for a visit that was paid with credit keeps the expiry of the lot it came
from (only the card-paid part becomes a new lot), so cancelling and rebooking can never roll an
expiry over. The draws record which lot paid how much.

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('credit_draws',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('visit_id', sa.String(length=36), nullable=False),
    sa.Column('lot_id', sa.String(length=36), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['credit_lots.id'], name=op.f('fk_credit_draws_lot_id_credit_lots'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_credit_draws_visit_id_visits'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_draws'))
    )
    with op.batch_alter_table('credit_draws', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_draws_visit_id'), ['visit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_credit_draws_lot_id'), ['lot_id'], unique=False)
    with op.batch_alter_table('credit_lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inherited_expiry', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('credit_lots', schema=None) as batch_op:
        batch_op.drop_column('inherited_expiry')
    op.drop_table('credit_draws')
