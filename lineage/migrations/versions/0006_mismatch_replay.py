"""the last replay started from a mismatch

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("mismatch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_replay_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_replay_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("last_replay_runs", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mismatch", schema=None) as batch_op:
        batch_op.drop_column("last_replay_runs")
        batch_op.drop_column("last_replay_by")
        batch_op.drop_column("last_replay_at")
