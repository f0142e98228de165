"""`cinderflow ops list | show | watch`: the operations API from a terminal.

It talks to the REST API like any client (`--url`, default http://127.0.0.1:8776; a token as
`OS_AUTH_TOKEN`, default noauth's `admin:<project>`), never to Temporal or the database, so
what it shows is what a user of the API may see. `watch` draws a live progress bar per
operation (rich) for one operation, or for every running operation of a volume, until each
has ended.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cinderflow.status import OperationStatus

ENDED = set(OperationStatus) - {OperationStatus.RUNNING}
POLL_S = 0.5
WAIT_FOR_ONE_S = 30.0
"""How long `watch <volume>` waits for a running operation to appear."""


class OpsError(Exception):
    """What the API answered instead (its fault message)."""


class OpsClient:
    def __init__(self, url: str, project: str | None, token: str | None) -> None:
        self.base = f"{url.rstrip('/')}/v3" + (f"/{project}" if project else "")
        self.http = httpx.Client(
            headers={"X-Auth-Token": token or f"admin:{project or 'admin'}"}, timeout=150.0
        )

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        try:
            response = self.http.get(self.base + path, params=params)
        except httpx.HTTPError as error:
            raise OpsError(f"cannot reach the API at {self.base}: {error}") from None
        if response.status_code != 200:
            raise OpsError(_fault(response))
        try:
            return response.json()
        except ValueError:
            raise OpsError(f"the API answered {path} with something not JSON") from None

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        return self._get("/operations", **{k: v for k, v in filters.items() if v})["operations"]

    def show(self, operation_id: str, wait: int = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        return self._get(f"/operations/{operation_id}", **params)["operation"]


def _fault(response: httpx.Response) -> str:
    try:
        (fault,) = response.json().values()
        return f"{response.status_code}: {fault['message']}"
    except Exception:
        return f"{response.status_code}: {response.text[:200]}"


def _table(operations: list[dict[str, Any]]) -> Table:
    table = Table("id", "operation", "resource", "status", "progress", "phase", "started")
    for op in operations:
        cells = (
            op["id"],
            op["operation"],
            f"{op['resource_type']} {op['resource_id']}",
            op["status"],
            "" if op["progress"] is None else f"{op['progress']}%",
            (op["phase"] or op.get("error") or "")[:60],
            op["started_at"] or "",
        )
        table.add_row(*(escape(str(cell)) for cell in cells))  # names are user data
    return table


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def watch(client: OpsClient, target: str, console: Console) -> int:
    """Bars until every watched operation has ended; 0 if all succeeded."""
    ops = _watched(client, target)
    if not ops:
        console.print(f"no running operation of {target}")
        return 1
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, TaskID] = {}
    final: dict[str, dict[str, Any]] = {}
    with Progress(*columns, console=console, refresh_per_second=4) as bars:
        for op in ops:
            tasks[op["id"]] = bars.add_task(
                f"{op['operation']} {op['resource_id'][:8]}", total=100, status=op["status"]
            )
        while len(final) < len(tasks):
            for op_id, task in tasks.items():
                if op_id in final:
                    continue
                op = _patiently(client, op_id)
                if op is None:
                    continue  # the API did not answer this time: ask again
                done = op["status"] in ENDED
                percent = 100 if op["status"] == OperationStatus.SUCCEEDED else op["progress"]
                bars.update(
                    task,
                    completed=percent if percent is not None else bars.tasks[task].completed,
                    status=escape(op["status"] if done else (op["phase"] or op["status"])[:50]),
                )
                if done:
                    final[op_id] = op
            if len(final) < len(tasks):
                time.sleep(POLL_S)
    for op in final.values():
        line = f"{op['operation']} {op['resource_id']}: {op['status']}"
        if op.get("error"):
            line += f" ({op['error']})"
        console.print(escape(line), highlight=False)
    return 0 if all(op["status"] == OperationStatus.SUCCEEDED for op in final.values()) else 1


def _patiently(client: OpsClient, operation_id: str) -> dict[str, Any] | None:
    """One operation, or None after a transient failure (an API restart must not end a
    watch); a refusal (404, 403) ends it."""
    try:
        return client.show(operation_id)
    except OpsError as error:
        if str(error).startswith(("404", "403", "401")):
            raise
        return None


def _watched(client: OpsClient, target: str) -> list[dict[str, Any]]:
    """The operation `target` names, or the running operations of the resource it names
    (waiting a while for one to appear: `watch` may be started right after the request)."""
    if not _is_uuid(target):
        return [client.show(target)]
    try:
        return [client.show(target)]
    except OpsError:
        pass
    deadline = time.monotonic() + WAIT_FOR_ONE_S
    while True:
        running = client.list(resource_id=target, status="running")
        if running or time.monotonic() >= deadline:
            return running
        time.sleep(POLL_S)


def run(args: Any) -> int:
    project = args.project or os.environ.get("OS_PROJECT_ID")
    token = args.token or os.environ.get("OS_AUTH_TOKEN")
    client = OpsClient(args.url, project, token)
    console = Console()
    try:
        if args.ops_command == "list":
            operations = client.list(
                resource_id=args.resource_id,
                status=args.status,
                operation=args.operation,
                all_tenants=1 if args.all_projects else None,
            )
            console.print(_table(operations))
            return 0
        if args.ops_command == "show":
            op = client.show(args.operation_id, wait=args.wait)
            for key, value in op.items():
                console.print(f"[bold]{key}[/bold]: {escape(str(value))}", highlight=False)
            return 0
        return watch(client, args.target, console)
    except OpsError as error:
        print(f"cinderflow ops: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def add_parser(commands: Any, formatter: Any) -> None:
    ops = commands.add_parser(
        "ops", help="list, show and watch operations (through the API)", formatter_class=formatter
    )
    ops.add_argument(
        "--url",
        default=os.environ.get("CINDERFLOW_API_URL", "http://127.0.0.1:8776"),
        help="the API's base URL ($CINDERFLOW_API_URL)",
    )
    ops.add_argument("--project", help="project id ($OS_PROJECT_ID; default: admin)")
    ops.add_argument("--token", help="X-Auth-Token ($OS_AUTH_TOKEN; default noauth admin)")
    verbs = ops.add_subparsers(dest="ops_command", required=True)
    listing = verbs.add_parser("list", help="the project's operations, newest first")
    listing.add_argument("--resource-id", help="only this volume's (snapshot's, ...)")
    listing.add_argument("--status", choices=[str(s) for s in OperationStatus])
    listing.add_argument("--operation", help="create, extend, retype, ...")
    listing.add_argument("--all-projects", action="store_true", help="admin: every project's")
    show = verbs.add_parser("show", help="one operation")
    show.add_argument("operation_id")
    show.add_argument("--wait", type=int, default=0, help="wait up to N s for it to end")
    watching = verbs.add_parser(
        "watch", help="live progress bars for an operation, or a volume's running ones"
    )
    watching.add_argument("target", help="an operation id, or a volume id")
