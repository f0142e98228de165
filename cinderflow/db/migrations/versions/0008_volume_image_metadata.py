"""What a volume made from an image keeps of it (Cinder's `volume_glance_metadata`), and the
keys cloned for images uploaded from encrypted volumes (deleted once their image is gone).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_image_metadata",
        sa.Column(
            "volume_id",
            sa.String(length=36),
            sa.ForeignKey("volumes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("volume_id", "key"),
    )
    op.create_table(
        "image_keys",
        sa.Column("key_id", sa.String(length=255), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("image_project_id", sa.String(length=255), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_image_keys_image_id", "image_keys", ["image_id"])


def downgrade() -> None:
    op.drop_table("image_keys")
    op.drop_table("volume_image_metadata")
