"""Holds (an operation reading a resource) and the snapshot's status before its operation;
operation inputs waiting in the outbox name their resource `resource_id`.

Workflows in flight when upgrading to this revision must have ended first (their histories
predate the operation framework, docs/design.md "Changing workflows safely"); inputs still
waiting in the outbox are rewritten here, so those operations start on the new code.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000
"""

import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("holder_id", sa.String(length=36), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "workflow_id"),
    )
    op.create_index("ix_holds_workflow_id", "holds", ["workflow_id"], unique=False)
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_status", sa.String(length=32), nullable=True))
    _rename_outbox_inputs(lambda kind: f"{kind}_id", lambda kind: "resource_id")


def _rename_outbox_inputs(old: Callable[[str], str], new: Callable[[str], str]) -> None:
    """Rename the resource field of every waiting input; `kind` is the workflow id's first
    word (volume, snapshot, attachment)."""
    outbox = sa.table(
        "workflow_outbox", sa.column("workflow_id", sa.String), sa.column("input", sa.JSON)
    )
    bind = op.get_bind()
    for workflow_id, payload in bind.execute(sa.select(outbox.c.workflow_id, outbox.c.input)):
        data = json.loads(payload) if isinstance(payload, str) else dict(payload)
        kind = workflow_id.split("-", 1)[0]
        renamed = {new(kind) if key == old(kind) else key: value for key, value in data.items()}
        if renamed != data:
            bind.execute(
                outbox.update().where(outbox.c.workflow_id == workflow_id).values(input=renamed)
            )


def downgrade() -> None:
    _rename_outbox_inputs(lambda kind: "resource_id", lambda kind: f"{kind}_id")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_column("previous_status")
    op.drop_index("ix_holds_workflow_id", table_name="holds")
    op.drop_table("holds")
