"""What a volume made from an image keeps of it (Cinder's `volume_glance_metadata`).

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


def downgrade() -> None:
    op.drop_table("volume_image_metadata")
