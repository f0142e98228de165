"""Volume transfers: the auth key as a salted hash, the projects on both sides, whether it
was accepted; rows are kept (`deleted`) once accepted or deleted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("salt", sa.String(length=255), nullable=False),
        sa.Column("crypt_hash", sa.String(length=255), nullable=False),
        sa.Column("no_snapshots", sa.Boolean(), nullable=False),
        sa.Column("source_project_id", sa.String(length=255), nullable=False),
        sa.Column("destination_project_id", sa.String(length=255), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("volume_id", "source_project_id", "deleted"):
        op.create_index(f"ix_volume_transfers_{column}", "volume_transfers", [column])


def downgrade() -> None:
    op.drop_table("volume_transfers")
