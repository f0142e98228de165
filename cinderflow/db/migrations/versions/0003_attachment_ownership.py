"""Attachments are owned by their connect/disconnect workflows and carry their project.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:25:13.094895
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("last_workflow_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.create_index(
            batch_op.f("ix_volume_attachments_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_attachments_project_id"))
        batch_op.drop_column("project_id")
        batch_op.drop_column("last_workflow_id")
        batch_op.drop_column("workflow_id")
