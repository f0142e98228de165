"""The volume's `name_id`: after a migration the volume keeps its id while its backend object is
the destination's (`volume-<name_id>`), as in Cinder.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE, not a batch: a batch would rebuild the table on SQLite and drop the
    # usage-counting triggers of 0005 with it.
    op.add_column("volumes", sa.Column("name_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE volumes DROP COLUMN name_id")  # SQLite >= 3.35 and PostgreSQL
