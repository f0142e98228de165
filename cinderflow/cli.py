"""`cinderflow dev | api | worker | db upgrade | manage volume|snapshot reset-state |
ops list|show|watch`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from cinderflow import ops
from cinderflow.files import DATA_FILES, keep_private, private_directory
from cinderflow.settings import InsecureSettings, Settings, load_settings

log = logging.getLogger("cinderflow.cli")


class SHOWN(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default (a newcomer's first question: which port?),
    except where there is none to show (a setting decides)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cinderflow", description=__doc__, formatter_class=SHOWN)
    top.add_argument("--config", help="TOML settings file (else $CINDERFLOW_CONFIG)")
    commands = top.add_subparsers(dest="command", required=True)

    dev = commands.add_parser(
        "dev", help="run the embedded stack (Temporal, worker, API)", formatter_class=SHOWN
    )
    dev.add_argument(
        "--data-dir", help="databases, logs and volumes (default: $XDG_DATA_HOME/cinderflow)"
    )
    dev.add_argument(
        "--host",
        default="127.0.0.1",
        help="IP to bind the API to (Temporal and its UI stay on 127.0.0.1)",
    )
    dev.add_argument("--port", type=int, default=8776, help="API port")
    dev.add_argument("--temporal-port", type=int, default=7233, help="Temporal gRPC port")
    dev.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port")

    api = commands.add_parser("api", help="serve the REST API", formatter_class=SHOWN)
    api.add_argument("--host", help="bind address (setting api_host; default 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (setting api_port; default 8776)")

    worker = commands.add_parser("worker", help="run workflows and driver activities")
    worker.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        help="serve only this configured backend (repeatable; default: all)",
    )
    worker.add_argument(
        "--no-control", action="store_true", help="serve only backend queues (no workflows)"
    )

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply all migrations")

    manage = commands.add_parser("manage", help="operator tools that bypass the API")
    manage_kinds = manage.add_subparsers(dest="manage_kind", required=True)
    volume_reset = _reset_state_parser(manage_kinds, "volume", "an operation that owns it")
    volume_reset.add_argument("--attach-status", choices=["attached", "detached"])
    volume_reset.add_argument("--migration-status")
    _reset_state_parser(manage_kinds, "snapshot", "a snapshot operation that owns it")
    ops.add_parser(commands, SHOWN)
    return top


def _reset_state_parser(kinds: Any, kind: str, owner: str) -> argparse.ArgumentParser:
    """`cinderflow manage <kind> reset-state <id> --state S [--force]`."""
    commands = kinds.add_parser(kind, help=f"{kind}s").add_subparsers(
        dest=f"{kind}_command", required=True
    )
    reset = commands.add_parser(
        "reset-state",
        help=f"write a {kind}'s status directly (logged); --force skips the API's refusals "
        f"and terminates {owner}",
    )
    reset.add_argument(f"{kind}_id")
    reset.add_argument("--state", required=True, help="the status to write")
    reset.add_argument("--force", action="store_true")
    return reset


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    keep_private()
    try:
        return _run(args)
    except InsecureSettings as refused:
        print(f"cinderflow {args.command}: {refused}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "dev":
        from cinderflow import dev

        settings = load_settings(
            args.config, data_dir=args.data_dir, api_host=args.host, api_port=args.port
        )
        return dev.run(settings, args.temporal_port, args.ui_port)

    if args.command == "db":
        from cinderflow.db.migrate import upgrade

        settings = load_settings(args.config)
        _ensure_data_dir(settings)
        upgrade(settings.db_url)
        print(f"database at revision head: {settings.db_url}")
        return 0

    if args.command == "manage":
        return _manage(args)

    if args.command == "ops":
        return ops.run(args)

    from cinderflow.serve import configure_logging, serve

    configure_logging()
    if args.command == "api":
        settings = load_settings(args.config, api_host=args.host, api_port=args.port)
        asyncio.run(serve(settings, api=True, worker=False))
        return 0
    settings = load_settings(args.config)
    _ensure_data_dir(settings)
    if not settings.backends and args.no_control:
        log.error("nothing to serve: no backends configured and --no-control given")
        return 2
    asyncio.run(
        serve(
            settings,
            api=False,
            worker=True,
            backend_names=args.backends,
            control=not args.no_control,
        )
    )
    return 0


def _manage(args: argparse.Namespace) -> int:
    from cinderflow.manage import ManageError, reset_snapshot_state, reset_volume_state
    from cinderflow.serve import configure_logging

    configure_logging()
    settings = load_settings(args.config)
    try:
        if args.manage_kind == "snapshot":
            account = reset_snapshot_state(
                settings, args.snapshot_id, status=args.state, force=args.force
            )
        else:
            account = reset_volume_state(
                settings,
                args.volume_id,
                status=args.state,
                attach_status=args.attach_status,
                migration_status=args.migration_status,
                force=args.force,
            )
    except ManageError as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    print(account)
    return 0


def _ensure_data_dir(settings: Settings) -> None:
    if settings.database_url is None:
        private_directory(settings.data_dir, files=DATA_FILES)


def main() -> None:
    """Entry point; exits with os._exit after flushing, avoiding the Temporal SDK's
    interpreter-shutdown crash (sdk-python#300) that turns a clean exit into 134/139."""
    try:
        code = run(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
