"""Core resources: type access and encryption, snapshots, attachments, quotas, messages, keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:48:51.934800
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=True),
        sa.Column("bit_length", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_keys_project_id"), ["project_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("resource_type", sa.String(length=255), nullable=True),
        sa.Column("resource_uuid", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("message_level", sa.String(length=255), nullable=False),
        sa.Column("action_id", sa.String(length=10), nullable=False),
        sa.Column("detail_id", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_project_id"), ["project_id"], unique=False)

    op.create_table(
        "quota_locks",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("project_id"),
    )
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reservations_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reservations_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "encryption",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("control_location", sa.String(length=255), nullable=False),
        sa.Column("cipher", sa.String(length=255), nullable=True),
        sa.Column("key_size", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_types.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("volume_type_id"),
    )
    op.create_table(
        "volume_type_projects",
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_types.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("volume_type_id", "project_id"),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("progress", sa.String(length=255), nullable=True),
        sa.Column("volume_size", sa.Integer(), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("provider_location", sa.String(length=1024), nullable=True),
        sa.Column("encryption_key_id", sa.String(length=36), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("last_workflow_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_types.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshots_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_snapshots_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_attachments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=True),
        sa.Column("attached_host", sa.String(length=255), nullable=True),
        sa.Column("mountpoint", sa.String(length=255), nullable=True),
        sa.Column("attach_mode", sa.String(length=36), nullable=True),
        sa.Column("attach_status", sa.String(length=255), nullable=False),
        sa.Column("connector", sa.JSON(), nullable=True),
        sa.Column("connection_info", sa.JSON(), nullable=True),
        sa.Column("attach_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detach_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["volume_id"], ["volumes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_attachments_volume_id"), ["volume_id"], unique=False
        )

    op.create_table(
        "snapshot_metadata",
        sa.Column("snapshot_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("snapshot_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("snapshot_metadata")
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_attachments_volume_id"))

    op.drop_table("volume_attachments")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshots_volume_id"))
        batch_op.drop_index(batch_op.f("ix_snapshots_project_id"))

    op.drop_table("snapshots")
    op.drop_table("volume_type_projects")
    op.drop_table("encryption")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reservations_volume_id"))
        batch_op.drop_index(batch_op.f("ix_reservations_project_id"))

    op.drop_table("reservations")
    op.drop_table("quotas")
    op.drop_table("quota_locks")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_project_id"))
        batch_op.drop_index(batch_op.f("ix_messages_expires_at"))

    op.drop_table("messages")
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_keys_project_id"))

    op.drop_table("keys")
