"""control plane: audit before/after state, append-only audit log, bulk replays

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The database itself refuses to change or remove an audit row, whatever the code above it does.
_PG_GUARD = """
CREATE OR REPLACE FUNCTION concord_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION concord_audit_log_append_only()
"""
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("before_state", _JSON, nullable=True))
        batch_op.add_column(sa.Column("after_state", _JSON, nullable=True))
    # After the batch alter: SQLite rebuilds the table there, which would drop the triggers.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        op.execute(_PG_TRIGGER)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)

    op.create_table(
        "bulk_replay",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("filter", _JSON, nullable=False),
        sa.Column("expected_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_replay")),
    )
    with op.batch_alter_table("bulk_replay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bulk_replay_created_at"), ["created_at"], unique=False)

    op.create_table(
        "bulk_replay_item",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("bulk_replay_id", _ID, nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bulk_replay_id"],
            ["bulk_replay.id"],
            name=op.f("fk_bulk_replay_item_bulk_replay_id_bulk_replay"),
        ),
        sa.ForeignKeyConstraint(
            ["correlation_id"],
            ["business_transaction.correlation_id"],
            name=op.f("fk_bulk_replay_item_correlation_id_business_transaction"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_replay_item")),
        sa.UniqueConstraint(
            "bulk_replay_id", "correlation_id", name=op.f("uq_bulk_replay_item_bulk_replay_id")
        ),
    )
    with op.batch_alter_table("bulk_replay_item", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bulk_replay_item_correlation_id"), ["correlation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_replay_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_replay_item_correlation_id"))
    op.drop_table("bulk_replay_item")
    with op.batch_alter_table("bulk_replay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_replay_created_at"))
    op.drop_table("bulk_replay")

    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS concord_audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("after_state")
        batch_op.drop_column("before_state")
