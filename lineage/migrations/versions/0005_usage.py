"""usage records: rated usage stored at intake, counted once into a period summary

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "usage_record",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("source_event_id", sa.String(length=255), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("last_delivery_at", _TS, nullable=False),
        sa.Column("summary_correlation_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["summary_correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_usage_record_summary_correlation_id_business_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_record")),
        sa.UniqueConstraint("source", "source_event_id", name=op.f("uq_usage_record_source")),
    )
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_record_open", ["summary_correlation_id", "period"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_usage_record_subscription_id"), ["subscription_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_record_subscription_id"))
        batch_op.drop_index("ix_usage_record_open")
    op.drop_table("usage_record")
