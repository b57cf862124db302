"""initial lineage schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "business_transaction",
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("state_reason", sa.String(length=500), nullable=True),
        sa.Column("source_system", sa.String(length=24), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column(
            "canonical",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("customer_id", sa.String(length=255), nullable=True),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("invoice_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=True),
        sa.Column("ordering_key", sa.String(length=300), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("correlation_id", name=op.f("pk_business_transaction")),
    )
    with op.batch_alter_table("business_transaction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_business_transaction_ordering", ["ordering_key", "occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_business_transaction_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_business_transaction_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_business_transaction_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(
            "ix_business_transaction_state_updated", ["state", "updated_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_business_transaction_subscription_id"), ["subscription_id"], unique=False
        )
        batch_op.create_index(
            "ix_business_transaction_workflow_received", ["workflow", "received_at"], unique=False
        )

    op.create_table(
        "external_ref",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("system", sa.String(length=24), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_external_ref_correlation_id_business_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_ref")),
        sa.UniqueConstraint(
            "correlation_id",
            "system",
            "object_type",
            "external_id",
            name=op.f("uq_external_ref_correlation_id"),
        ),
    )
    with op.batch_alter_table("external_ref", schema=None) as batch_op:
        batch_op.create_index("ix_external_ref_external_id", ["external_id"], unique=False)

    op.create_table(
        "inbox_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("source_event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("ignored_reason", sa.String(length=500), nullable=True),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("last_delivery_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_inbox_event_correlation_id_business_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_event")),
        sa.UniqueConstraint("correlation_id", name=op.f("uq_inbox_event_correlation_id")),
        sa.UniqueConstraint("source", "source_event_id", name=op.f("uq_inbox_event_source")),
    )
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbox_event_source_event_id"), ["source_event_id"], unique=False
        )

    op.create_table(
        "workflow_run",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column(
            "input_override",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("from_step", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_workflow_run_correlation_id_business_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_run")),
        sa.UniqueConstraint(
            "correlation_id", "number", name=op.f("uq_workflow_run_correlation_id")
        ),
    )
    with op.batch_alter_table("workflow_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflow_run_correlation_id"), ["correlation_id"], unique=False
        )

    op.create_table(
        "workflow_step",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target_system", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_class", sa.String(length=24), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_run.id"], name=op.f("fk_workflow_step_run_id_workflow_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_step")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_workflow_step_run_id")),
    )
    with op.batch_alter_table("workflow_step", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflow_step_correlation_id"), ["correlation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_workflow_step_run_id"), ["run_id"], unique=False)

    op.create_table(
        "exception_item",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("step_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=False),
        sa.Column("error_class", sa.String(length=24), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("suggested_action", sa.String(length=500), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column(
            "resolved_by_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_exception_item_correlation_id_business_transaction"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_run_id"],
            ["workflow_run.id"],
            name=op.f("fk_exception_item_resolved_by_run_id_workflow_run"),
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["workflow_step.id"], name=op.f("fk_exception_item_step_id_workflow_step")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_item")),
    )
    with op.batch_alter_table("exception_item", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exception_item_correlation_id"), ["correlation_id"], unique=False
        )
        batch_op.create_index(
            "ix_exception_item_status_created", ["status", "created_at"], unique=False
        )

    op.create_table(
        "step_attempt",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("step_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("error_class", sa.String(length=24), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("target_ref", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["workflow_step.id"], name=op.f("fk_step_attempt_step_id_workflow_step")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_attempt")),
        sa.UniqueConstraint("step_id", "number", name=op.f("uq_step_attempt_step_id")),
    )
    with op.batch_alter_table("step_attempt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_step_attempt_correlation_id"), ["correlation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("step_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_attempt_correlation_id"))

    op.drop_table("step_attempt")
    with op.batch_alter_table("exception_item", schema=None) as batch_op:
        batch_op.drop_index("ix_exception_item_status_created")
        batch_op.drop_index(batch_op.f("ix_exception_item_correlation_id"))

    op.drop_table("exception_item")
    with op.batch_alter_table("workflow_step", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_step_run_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_step_correlation_id"))

    op.drop_table("workflow_step")
    with op.batch_alter_table("workflow_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_run_correlation_id"))

    op.drop_table("workflow_run")
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_event_source_event_id"))

    op.drop_table("inbox_event")
    with op.batch_alter_table("external_ref", schema=None) as batch_op:
        batch_op.drop_index("ix_external_ref_external_id")

    op.drop_table("external_ref")
    with op.batch_alter_table("business_transaction", schema=None) as batch_op:
        batch_op.drop_index("ix_business_transaction_workflow_received")
        batch_op.drop_index(batch_op.f("ix_business_transaction_subscription_id"))
        batch_op.drop_index("ix_business_transaction_state_updated")
        batch_op.drop_index(batch_op.f("ix_business_transaction_received_at"))
        batch_op.drop_index(batch_op.f("ix_business_transaction_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_business_transaction_customer_id"))

    op.drop_table("business_transaction")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("api_key")
