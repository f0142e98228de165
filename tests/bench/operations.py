"""Operation benchmark: `cinderflow dev` alone, or side by side with another Cinder endpoint.

    python -m tests.bench.operations                       # cinderflow dev on SQLite
    python -m tests.bench.operations --pg                  # ... on PostgreSQL (127.0.0.1:5432)
    python -m tests.bench.operations --compare http://127.0.0.1:21876/v3 --pairs 3
    python -m tests.bench.operations --rows 100000         # create/list at 0 and at 100k rows
    python -m tests.bench.operations --burst 1000          # 1000 x 1 GB creates, 10 in flight

It starts its own `cinderflow dev` on free ports in a temporary directory and talks plain HTTP
(noauth tokens `<user>:<project>`, as Cinder's noauth). With `--compare` every pair runs the same
sections on both endpoints, alternating which goes first, and the table shows both medians and
the median of the per-pair ratios (cinderflow / other). CPU is summed over each stack's
processes from /proc: cinderflow's process tree (API, worker, Temporal dev server) plus, with
`--pg`, the PostgreSQL backends serving its database; the other stack's processes are those
whose command line contains `--compare-procs` (default: the cinder-anchor directory, which
matches cinder-api/scheduler/volume, its RabbitMQ and its PostgreSQL). It prints tables; it
asserts nothing about time (the test suite never does).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cinderflow.temporal.devserver import free_port
from tests.helpers import poll as wait_for

MAIN = "1111111111111111aaaaaaaaaaaaaaaa"
LISTED = "3333333333333333cccccccccccccccc"
ROWS = "4444444444444444dddddddddddddddd"
POLL_S = 0.01
"""The status poll of the latency loops, the same for every endpoint: create -> available and
extend -> available are seen to within it (at the anchor's 50 ms, both sides' figures snap to
multiples of 50 ms after the POST and the ratio measures the snapping). `--poll` changes it."""
CPU_POLL_S = 0.05
"""The status poll of the CPU loops (the anchor bench.py's): they run apart from the latency
loops so that a finer latency poll does not add its GETs to the CPU per operation."""
CONCURRENT_POLL_S = 0.25
"""The poll of the concurrent sections (as the anchor's): ten clients polling fast would
measure the API's GETs more than the creates."""
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ERRORS = ("error", "error_extending", "error_deleting")


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# Talking to an endpoint ------------------------------------------------------------------------

_clients = threading.local()


class Endpoint:
    """One project of a Cinder-compatible v3 endpoint."""

    def __init__(self, base: str, project: str, microversion: str = "3.71") -> None:
        if not base.startswith(("http://127.0.0.1", "http://localhost")):
            raise SystemExit("benchmarks talk to 127.0.0.1 only")
        self.base = base.rstrip("/")
        self.project = project
        self.headers = {
            "X-Auth-Token": f"admin:{project}",
            "Accept": "application/json",
            "OpenStack-API-Version": f"volume {microversion}",
        }

    @property
    def http(self) -> httpx.Client:
        client = getattr(_clients, "client", None)
        if client is None:
            client = _clients.client = httpx.Client(timeout=120)
        return client

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 202)):
        response = self.http.request(
            method, f"{self.base}/{self.project}{path}", json=body, headers=self.headers
        )
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def create(self, size: int = 1) -> str:
        body = {"volume": {"size": size, "name": f"bench-{uuid.uuid4().hex[:8]}"}}
        return self.call("POST", "/volumes", body).json()["volume"]["id"]

    def volume(self, volume_id: str) -> dict[str, Any]:
        return self.call("GET", f"/volumes/{volume_id}").json()["volume"]

    def wait(
        self,
        volume_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 300,
        poll: float | None = None,
    ):
        def settled() -> dict[str, Any] | None:
            volume = self.volume(volume_id)
            if volume["status"] in ERRORS:
                raise RuntimeError(f"volume {volume_id} went to {volume['status']}")
            return volume if done(volume) else None

        interval = POLL_S if poll is None else poll
        return wait_for(settled, timeout=timeout, interval=interval, what=f"volume {volume_id}")

    def available(self, volume_id: str, size: int | None = None, poll: float | None = None):
        self.wait(
            volume_id,
            lambda v: v["status"] == "available" and (size is None or v["size"] == size),
            poll=poll,
        )

    def unlimited(self) -> None:
        """No quota in the way of the benchmark (Cinder's anchor runs with -1 everywhere)."""
        limits = {"volumes": -1, "gigabytes": -1, "snapshots": -1}
        self.call("PUT", f"/os-quota-sets/{self.project}", {"quota_set": limits})

    def delete_all(self, volume_ids: list[str], timeout: float = 600) -> None:
        for volume_id in volume_ids:
            self.call("DELETE", f"/volumes/{volume_id}", ok=(202, 404))
        left = set(volume_ids)

        def gone() -> bool:
            for volume_id in list(left):
                response = self.http.get(
                    f"{self.base}/{self.project}/volumes/{volume_id}", headers=self.headers
                )
                if response.status_code == 404:
                    left.discard(volume_id)
            return not left

        wait_for(gone, timeout=timeout, what=f"{len(volume_ids)} volumes deleted")


# Resources of a stack ------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str, float, int]]:
    """pid -> (parent, command line, CPU seconds incl. reaped children, RSS bytes)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        found[int(entry)] = (int(fields[1]), command, cpu, int(fields[21]) * PAGE_SIZE)
    return found


@dataclass
class Stack:
    """Which processes make up a stack: a process tree, and/or command lines with a marker."""

    root: int | None = None
    markers: tuple[str, ...] = ()

    def members(self, table: dict[int, tuple[int, str, float, int]]) -> list[int]:
        def inside(pid: int) -> bool:
            seen = 0
            while pid in table and seen < 64:
                if pid == self.root:
                    return True
                pid, seen = table[pid][0], seen + 1
            return False

        return [
            pid
            for pid, (_, command, _, _) in table.items()
            if (self.root and inside(pid)) or any(marker in command for marker in self.markers)
        ]

    def cpu_s(self) -> float:
        table = _processes()
        return sum(table[pid][2] for pid in self.members(table))

    def rss_mib(self) -> float:
        table = _processes()
        return sum(table[pid][3] for pid in self.members(table)) / 2**20


# Sections ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    base: str
    stack: Stack
    results: list[dict[str, float]] = field(default_factory=list)

    def endpoint(self, project: str = MAIN) -> Endpoint:
        return Endpoint(self.base, project)


def sequential_creates(target: Target, n: int) -> dict[str, float]:
    api = target.endpoint()
    whole, posts, ids = [], [], []
    for _ in range(n):
        start = time.monotonic()
        volume_id = api.create()
        posts.append(time.monotonic() - start)
        api.available(volume_id)
        whole.append(time.monotonic() - start)
        ids.append(volume_id)
    cpu = target.stack.cpu_s()
    for _ in range(n):
        ids.append(api.create())
        api.available(ids[-1], poll=CPU_POLL_S)
    cpu = target.stack.cpu_s() - cpu
    gets = []
    for _ in range(50):
        start = time.monotonic()
        api.volume(ids[0])
        gets.append(time.monotonic() - start)
    api.delete_all(ids)
    return {
        "create_p50": percentile(whole, 50),
        "create_p95": percentile(whole, 95),
        "post_p50": percentile(posts, 50),
        "get_p50": percentile(gets, 50),
        "cpu_ms_per_create": cpu * 1000 / n,
    }


def extends(target: Target, n: int) -> dict[str, float]:
    api = target.endpoint()
    volume_id = api.create()
    api.available(volume_id)
    took = []
    for size in range(2, n + 2):
        start = time.monotonic()
        api.call("POST", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": size}})
        api.available(volume_id, size)
        took.append(time.monotonic() - start)
    cpu = target.stack.cpu_s()
    for size in range(n + 2, 2 * n + 2):
        api.call("POST", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": size}})
        api.available(volume_id, size, poll=CPU_POLL_S)
    cpu = target.stack.cpu_s() - cpu
    api.delete_all([volume_id])
    return {
        "extend_p50": percentile(took, 50),
        "extend_p95": percentile(took, 95),
        "cpu_ms_per_extend": cpu * 1000 / n,
    }


def concurrent_creates(target: Target, n: int = 50, in_flight: int = 10) -> dict[str, Any]:
    api = target.endpoint()
    failures: list[str] = []

    def one(_: int) -> str:
        volume_id = api.create()
        try:
            api.available(volume_id, poll=CONCURRENT_POLL_S)
        except RuntimeError as error:
            failures.append(str(error))
        return volume_id

    start = time.monotonic()
    with cf.ThreadPoolExecutor(in_flight) as pool:
        ids = list(pool.map(one, range(n)))
    wall = time.monotonic() - start
    api.delete_all(ids)
    return {"concurrent_wall": wall, "concurrent_errors": len(failures)}


def populate(api: Endpoint, count: int, in_flight: int = 10) -> None:
    have = len(api.call("GET", "/volumes?limit=5000").json()["volumes"])
    if have >= count:
        return
    log(f"populating {api.project} with {count - have} volumes")
    with cf.ThreadPoolExecutor(in_flight) as pool:
        ids = list(pool.map(lambda _: api.create(), range(count - have)))
    for volume_id in ids:
        api.available(volume_id, poll=CONCURRENT_POLL_S)


def detail_list(target: Target, volumes: int = 1000, seconds: float = 10) -> dict[str, float]:
    api = target.endpoint(LISTED)
    populate(api, volumes)
    took = []
    for _ in range(20):
        start = time.monotonic()
        listed = api.call("GET", "/volumes/detail").json()["volumes"]
        took.append(time.monotonic() - start)
    if len(listed) < volumes:
        raise RuntimeError(f"{target.name} lists {len(listed)} volumes, not {volumes}")
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        lister = Endpoint(target.base, LISTED)
        while time.monotonic() < stop:
            lister.call("GET", "/volumes/detail")
            with lock:
                done[0] += 1

    start = time.monotonic()
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client(), range(8)))
    return {
        "detail_1000_p50": percentile(took, 50),
        "detail_8_clients_rps": done[0] / (time.monotonic() - start),
    }


def idle_rss(target: Target) -> dict[str, float]:
    return {"idle_rss_mib": target.stack.rss_mib()}


def run_pair(targets: list[Target], args: argparse.Namespace) -> None:
    for target in targets:
        log(f"-- {target.name}")
        result: dict[str, float] = {}
        if not target.results:  # idle: before this benchmark's load has grown any cache
            result.update(idle_rss(target))
        result.update(sequential_creates(target, args.creates))
        result.update(extends(target, args.extends))
        result.update(concurrent_creates(target))
        if not args.no_list:
            result.update(detail_list(target, seconds=args.list_seconds))
        log(target.name, {k: round(v, 4) for k, v in result.items()})
        target.results.append(result)


# Rows in the database -------------------------------------------------------------------------


def insert_rows(db_url: str, project: str, count: int, host: str) -> None:
    """`count` available volumes straight into the database (as years of use would leave
    them): old `created_at`, placed on the backend, counted by the quota triggers."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        type_id = conn.exec_driver_sql("SELECT id FROM volume_types LIMIT 1").scalar()
        batch = []
        for number in range(count):
            batch.append(
                {
                    "id": str(uuid.uuid4()),
                    "project_id": project,
                    "user_id": "admin",
                    "name": f"row-{number}",
                    "size": 1,
                    "status": "available",
                    "attach_status": "detached",
                    "availability_zone": "nova",
                    "volume_type_id": type_id,
                    "host": host,
                    "bootable": False,
                    "multiattach": False,
                    "consumes_quota": True,
                    "created_at": f"2020-01-01 00:00:{number % 60:02d}.{number:06d}",
                }
            )
        columns = list(batch[0])
        statement = sa.text(
            f"INSERT INTO volumes ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )
        for start in range(0, count, 5000):
            conn.execute(statement, batch[start : start + 5000])
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute of such a change: without fresh statistics the
        # planner guesses 11 rows per project and sorts all 100 000 instead of using an index.
        with engine.begin() as conn:  # committed: a rolled-back ANALYZE leaves no statistics
            conn.exec_driver_sql("ANALYZE volumes")
    engine.dispose()


def rows_growth(target: Target, db_url: str, rows: int) -> list[list[str]]:
    """Create -> available and a project's `detail?limit=100` with 100 volumes in the
    database, then with `rows` more volume rows (in the benchmark's own project: the quota's
    worst case)."""
    api = target.endpoint(ROWS)
    api.unlimited()
    populate(api, 100)  # a full page of 100 either way: the list renders the same amount
    first = api.call("GET", "/volumes?limit=1").json()["volumes"][0]["id"]
    host = api.volume(first)["os-vol-host-attr:host"]

    def measure() -> tuple[float, float]:
        ids, whole = [], []
        for _ in range(30):
            start = time.monotonic()
            volume_id = api.create()
            api.available(volume_id)
            whole.append(time.monotonic() - start)
            ids.append(volume_id)
        listed = []
        for _ in range(30):
            start = time.monotonic()
            api.call("GET", "/volumes/detail?limit=100")
            listed.append(time.monotonic() - start)
        api.delete_all(ids)
        return percentile(whole, 50), percentile(listed, 50)

    empty = measure()
    log(f"inserting {rows} volume rows")
    insert_rows(db_url, ROWS, rows, host)
    full = measure()
    return [
        ["create -> available p50", ms(empty[0]), ms(full[0]), f"{full[0] / empty[0]:.2f}"],
        ["GET detail?limit=100 p50", ms(empty[1]), ms(full[1]), f"{full[1] / empty[1]:.2f}"],
    ]


# cinderflow dev --------------------------------------------------------------------------------


@contextlib.contextmanager
def cinderflow_dev(pg: bool) -> Iterator[tuple[Target, str]]:
    """A fresh `cinderflow dev`; yields the target and its database URL."""
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        env = dict(os.environ)
        database = f"cfbench_{uuid.uuid4().hex[:8]}"
        db_url = f"sqlite:///{tmp}/data/cinderflow.sqlite"
        if pg:
            subprocess.run(
                ["psql", f"{POSTGRES}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True
            )
            db_url = f"{POSTGRES}/{database}"
        env["CINDERFLOW_DATABASE_URL"] = db_url
        port = free_port()
        command = [
            str(Path(sys.executable).parent / "cinderflow"), "dev", "--data-dir", f"{tmp}/data",
            "--port", str(port), "--temporal-port", str(free_port()),
            "--ui-port", str(free_port()),
        ]  # fmt: skip
        log_file = open(f"{tmp}/dev.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v3"
        try:

            def serving() -> bool:
                if process.poll() is not None:
                    raise SystemExit(Path(f"{tmp}/dev.log").read_text()[-3000:])
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(f"{base}/{MAIN}/os-services", headers={
                        "X-Auth-Token": f"admin:{MAIN}"}).status_code == 200  # fmt: skip
                return False

            wait_for(serving, timeout=120, interval=0.2, what="cinderflow dev")
            markers = (f"postgres: postgres {database} ",) if pg else ()
            target = Target("cinderflow", base, Stack(root=process.pid, markers=markers))
            for project in (MAIN, LISTED):
                target.endpoint(project).unlimited()
            wait_for(  # the backend has reported: placements can start
                lambda: any(
                    service["binary"] == "cinder-volume" and service["state"] == "up"
                    for service in target.endpoint().call("GET", "/os-services").json()["services"]
                ),
                what="a backend reporting",
            )
            yield target, db_url
        finally:
            process.send_signal(2)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
            log_file.close()
            if pg:
                subprocess.run(
                    ["psql", f"{POSTGRES}/postgres", "-qc", f"DROP DATABASE {database} (FORCE)"],
                    check=False,
                )


# Tables ----------------------------------------------------------------------------------------

ROWS_SHOWN = [
    ("create_p50", "sequential create -> available p50", "ms"),
    ("create_p95", "sequential create -> available p95", "ms"),
    ("extend_p50", "extend -> available p50", "ms"),
    ("extend_p95", "extend -> available p95", "ms"),
    ("post_p50", "POST /volumes p50", "ms"),
    ("get_p50", "GET /volumes/{id} p50", "ms"),
    ("concurrent_wall", "50 creates, 10 in flight, wall", "s"),
    ("concurrent_errors", "... of which went to error", ""),
    ("detail_1000_p50", "GET /volumes/detail, 1000 volumes, p50", "ms"),
    ("detail_8_clients_rps", "GET /volumes/detail, 8 clients, req/s", ""),
    ("cpu_ms_per_create", "CPU-ms per create (whole stack)", ""),
    ("cpu_ms_per_extend", "CPU-ms per extend (whole stack)", ""),
    ("idle_rss_mib", "idle RSS of the whole stack, MiB", ""),
]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def shown(value: float, unit: str) -> str:
    if unit == "ms":
        return ms(value)
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def median_of(results: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def report(ours: Target, other: Target | None) -> str:
    rows = []
    for key, label, unit in ROWS_SHOWN:
        mine = median_of(ours.results, key)
        if mine is None:
            continue
        row = [label, shown(mine, unit)]
        if other is not None:
            theirs = median_of(other.results, key)
            ratios = [
                a[key] / b[key]
                for a, b in zip(ours.results, other.results, strict=True)
                if key in a and key in b and b[key]
            ]
            row += [
                shown(theirs, unit) if theirs is not None else "-",
                f"{statistics.median(ratios):.2f}" if ratios else "-",
            ]
        rows.append(row)
    headers = ["metric", f"cinderflow (median of {len(ours.results)})"]
    if other is not None:
        headers += [f"{other.name} (median)", "ratio (median of per-pair)"]
    return table(headers, rows)


def main() -> int:
    global POLL_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", action="store_true", help="cinderflow dev on PostgreSQL")
    parser.add_argument("--compare", metavar="URL", help="another Cinder-compatible endpoint")
    parser.add_argument("--compare-name", default="Cinder")
    parser.add_argument(
        "--compare-procs",
        default=os.path.join(tempfile.gettempdir(), "cinder-anchor"),
        help="command-line marker of the other stack's processes (for CPU and RSS)",
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--poll", type=float, default=POLL_S, help="latency status poll, s")
    parser.add_argument("--creates", type=int, default=100)
    parser.add_argument("--extends", type=int, default=100)
    parser.add_argument("--list-seconds", type=float, default=10)
    parser.add_argument("--no-list", action="store_true")
    parser.add_argument("--rows", type=int, default=0, help="also measure at this many rows")
    parser.add_argument("--burst", type=int, default=0, help="N x 1 GB creates, 10 in flight")
    args = parser.parse_args()
    POLL_S = args.poll
    with cinderflow_dev(args.pg) as (ours, db_url):
        ours.name = f"cinderflow ({'PostgreSQL' if args.pg else 'SQLite'})"
        if args.burst:
            log(f"burst of {args.burst}")
            burst = concurrent_creates(ours, n=args.burst)
            print(table(["burst", "wall", "errors"], [
                [f"{args.burst} x 1 GB, 10 in flight", f"{burst['concurrent_wall']:.1f} s",
                 str(burst["concurrent_errors"])]]))  # fmt: skip
            return 0
        if args.rows:
            print(table(["metric", "100 rows", f"+{args.rows} rows", "ratio"],
                        rows_growth(ours, db_url, args.rows)))  # fmt: skip
            return 0
        other = None
        if args.compare:
            other = Target(args.compare_name, args.compare, Stack(markers=(args.compare_procs,)))
            for project in (MAIN, LISTED):
                with contextlib.suppress(RuntimeError):
                    other.endpoint(project).unlimited()
        for pair in range(args.pairs):
            log(f"=== pair {pair + 1}/{args.pairs}")
            order = [ours] if other is None else ([ours, other] if pair % 2 == 0 else [other, ours])
            run_pair(order, args)
        print(report(ours, other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
