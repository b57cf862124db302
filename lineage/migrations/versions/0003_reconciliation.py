"""reconciliation: runs and mismatches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconciliation_run",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("tolerance_minor", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_dir", sa.String(length=1000), nullable=True),
        sa.Column("input_rows", _JSON, nullable=True),
        sa.Column("kinds_evaluated", _JSON, nullable=True),
        sa.Column("summary", _JSON, nullable=True),
        sa.Column("found_count", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("auto_resolved_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_run")),
    )
    with op.batch_alter_table("reconciliation_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reconciliation_run_period"), ["period"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reconciliation_run_started_at"), ["started_at"], unique=False
        )

    op.create_table(
        "mismatch",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=True),
        sa.Column("system", sa.String(length=24), nullable=False),
        sa.Column("match_key", sa.String(length=600), nullable=False),
        sa.Column("source_system", sa.String(length=24), nullable=True),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("source_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("source_currency", sa.String(length=3), nullable=True),
        sa.Column("source_status", sa.String(length=40), nullable=True),
        sa.Column("target_system", sa.String(length=24), nullable=True),
        sa.Column("target_id", sa.String(length=1000), nullable=True),
        sa.Column("target_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("target_currency", sa.String(length=3), nullable=True),
        sa.Column("target_status", sa.String(length=40), nullable=True),
        sa.Column("amount_at_risk_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("correlation_id", sa.String(length=36), nullable=True),
        sa.Column("correlation_ids", _JSON, nullable=False),
        sa.Column("refs", _JSON, nullable=False),
        sa.Column("first_run_id", _ID, nullable=False),
        sa.Column("last_run_id", _ID, nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("resolved_run_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["first_run_id"],
            ["reconciliation_run.id"],
            name=op.f("fk_mismatch_first_run_id_reconciliation_run"),
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["reconciliation_run.id"],
            name=op.f("fk_mismatch_last_run_id_reconciliation_run"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_run_id"],
            ["reconciliation_run.id"],
            name=op.f("fk_mismatch_resolved_run_id_reconciliation_run"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mismatch")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_mismatch_fingerprint")),
    )
    with op.batch_alter_table("mismatch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mismatch_correlation_id"), ["correlation_id"], unique=False
        )
        batch_op.create_index("ix_mismatch_period_status", ["period", "status"], unique=False)
        batch_op.create_index("ix_mismatch_status_kind", ["status", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mismatch", schema=None) as batch_op:
        batch_op.drop_index("ix_mismatch_status_kind")
        batch_op.drop_index("ix_mismatch_period_status")
        batch_op.drop_index(batch_op.f("ix_mismatch_correlation_id"))
    op.drop_table("mismatch")
    with op.batch_alter_table("reconciliation_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_run_started_at"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_run_period"))
    op.drop_table("reconciliation_run")
