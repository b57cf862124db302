"""what a succeeded step handed on to later steps

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("workflow_step", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_step", schema=None) as batch_op:
        batch_op.drop_column("output")
