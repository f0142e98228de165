"""Quota usage kept by triggers, and the indexes that keep create, extend and list flat.

`usage_counts` holds, per project, kind (volumes, snapshots) and volume type, how many rows
there are and their gigabytes. Triggers on `volumes` and `snapshots` keep it in the same
transaction as the row change, whichever code makes it, so the quota check reads a few rows
instead of counting the project (exact by construction; docs/design.md "Quota"). It is filled
from the rows here.

Indexes: `volumes(created_at, id)` for the scheduler's "placed since the last report" and for
the all-projects list in Cinder's default order; `volumes(project_id, created_at, id)` for a
project's list (both read backwards for `created_at desc, id desc`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COUNTED = {
    # table: (kind, size column, condition on the row, or None)
    "volumes": ("volumes", "size", "consumes_quota"),
    "snapshots": ("snapshots", "volume_size", None),
}


def upgrade() -> None:
    op.create_table(
        "usage_counts",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("gigabytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "kind", "volume_type_id"),
    )
    op.create_index("ix_volumes_created_at_id", "volumes", ["created_at", "id"])
    op.create_index(
        "ix_volumes_project_id_created_at_id", "volumes", ["project_id", "created_at", "id"]
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, (kind, size, condition) in COUNTED.items():
        for statement in (_postgres_triggers if postgres else _sqlite_triggers)(
            table, kind, size, condition
        ):
            op.execute(statement)
        where = f"WHERE {condition}" if condition else ""
        op.execute(
            f"INSERT INTO usage_counts (project_id, kind, volume_type_id, count, gigabytes) "
            f"SELECT project_id, '{kind}', COALESCE(volume_type_id, ''), COUNT(*), "
            f"COALESCE(SUM({size}), 0) FROM {table} {where} "
            f"GROUP BY project_id, COALESCE(volume_type_id, '')"
        )


def _row(side: str, kind: str, size: str) -> tuple[str, str]:
    """The counter key and the row's size, of NEW or OLD."""
    key = (
        f"project_id = {side}.project_id AND kind = '{kind}' "
        f"AND volume_type_id = COALESCE({side}.volume_type_id, '')"
    )
    return key, f"{side}.{size}"


def _add(kind: str, size: str) -> str:
    return (
        "INSERT INTO usage_counts (project_id, kind, volume_type_id, count, gigabytes) "
        f"VALUES (NEW.project_id, '{kind}', COALESCE(NEW.volume_type_id, ''), 1, NEW.{size}) "
        "ON CONFLICT (project_id, kind, volume_type_id) DO UPDATE SET "
        "count = usage_counts.count + 1, "
        "gigabytes = usage_counts.gigabytes + excluded.gigabytes"
    )


def _subtract(kind: str, size: str) -> str:
    key, amount = _row("OLD", kind, size)
    return (
        f"UPDATE usage_counts SET count = count - 1, gigabytes = gigabytes - {amount} WHERE {key}"
    )


def _sqlite_triggers(table: str, kind: str, size: str, condition: str | None) -> list[str]:
    def when(side: str) -> str:
        return f"WHEN {side}.{condition}" if condition else ""

    columns = f"project_id, volume_type_id, {size}" + (f", {condition}" if condition else "")
    return [
        f"CREATE TRIGGER {table}_usage_insert AFTER INSERT ON {table} {when('NEW')} "
        f"BEGIN {_add(kind, size)}; END",
        f"CREATE TRIGGER {table}_usage_delete AFTER DELETE ON {table} {when('OLD')} "
        f"BEGIN {_subtract(kind, size)}; END",
        # an update is the old row's removal then the new row's addition (two triggers, as
        # SQLite triggers have one WHEN each)
        f"CREATE TRIGGER {table}_usage_update_old AFTER UPDATE OF {columns} ON {table} "
        f"{when('OLD')} BEGIN {_subtract(kind, size)}; END",
        f"CREATE TRIGGER {table}_usage_update_new AFTER UPDATE OF {columns} ON {table} "
        f"{when('NEW')} BEGIN {_add(kind, size)}; END",
    ]


def _postgres_triggers(table: str, kind: str, size: str, condition: str | None) -> list[str]:
    def counted(side: str) -> str:
        return f" AND {side}.{condition}" if condition else ""

    columns = f"project_id, volume_type_id, {size}" + (f", {condition}" if condition else "")
    return [
        f"""CREATE FUNCTION {table}_usage() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE'){counted("OLD")} THEN
                {_subtract(kind, size)};
            END IF;
            IF TG_OP IN ('UPDATE', 'INSERT'){counted("NEW")} THEN
                {_add(kind, size)};
            END IF;
            RETURN NULL;
        END $$""",
        f"CREATE TRIGGER {table}_usage AFTER INSERT OR DELETE OR UPDATE OF {columns} "
        f"ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_usage()",
    ]


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in COUNTED:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_usage ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_usage()")
        else:
            for suffix in ("insert", "delete", "update_old", "update_new"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_usage_{suffix}")
    op.drop_index("ix_volumes_project_id_created_at_id", table_name="volumes")
    op.drop_index("ix_volumes_created_at_id", table_name="volumes")
    op.drop_table("usage_counts")
