"""Driver calls, registered once per backend on that backend's task queue.

The driver runs in a thread while the activity heartbeats, so a dead worker is noticed after the
heartbeat timeout and the call is retried elsewhere (drivers are idempotent). Driver errors end
the operation (non-retryable); anything else (a crash, a transient error) is retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.drivers.base import SnapshotRef, VolumeDriver, VolumeDriverError, VolumeRef
from cinderflow.failpoints import Failpoints
from cinderflow.payloads import (
    Connection,
    DriverReset,
    ExtendRequest,
    VolumeClone,
    VolumeFromSnapshot,
)
from cinderflow.threads import run_blocking

MIN_HEARTBEAT_INTERVAL_S = 0.2

T = TypeVar("T")


async def heartbeating(work: Awaitable[T]) -> T:
    """Await `work`, heartbeating at a third of the heartbeat timeout until it is done."""
    timeout = activity.info().heartbeat_timeout
    interval = max(timeout.total_seconds() / 3, MIN_HEARTBEAT_INTERVAL_S) if timeout else 10.0
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            activity.heartbeat()
            await asyncio.wait({task}, timeout=interval)
        return task.result()
    finally:
        task.cancel()


def as_activity_error(error: Exception) -> ApplicationError:
    message = str(error) or type(error).__name__
    if isinstance(error, NotImplementedError):
        message = str(error) or "not supported by this driver"
    return ApplicationError(message, type=type(error).__name__, non_retryable=True)


class DriverActivities:
    def __init__(
        self, driver: VolumeDriver, failpoints: Failpoints, executor: Executor | None = None
    ) -> None:
        self.driver = driver
        self.failpoints = failpoints
        self.executor = executor

    async def _call(self, name: str, call: Callable[[], T]) -> T:
        async def guarded() -> T:
            await self.failpoints.reach(f"driver.{name}.before")
            try:
                result = await run_blocking(self.executor, call)
            except (VolumeDriverError, NotImplementedError) as error:
                raise as_activity_error(error) from error
            await self.failpoints.reach(f"driver.{name}.after")
            return result

        return await heartbeating(guarded())

    @activity.defn(name="driver.create_volume")
    async def create_volume(self, volume: VolumeRef) -> dict[str, Any]:
        return await self._call("create_volume", lambda: self.driver.create_volume(volume)) or {}

    @activity.defn(name="driver.delete_volume")
    async def delete_volume(self, volume: VolumeRef) -> None:
        await self._call("delete_volume", lambda: self.driver.delete_volume(volume))

    @activity.defn(name="driver.create_snapshot")
    async def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any]:
        return (
            await self._call("create_snapshot", lambda: self.driver.create_snapshot(snapshot)) or {}
        )

    @activity.defn(name="driver.delete_snapshot")
    async def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        await self._call("delete_snapshot", lambda: self.driver.delete_snapshot(snapshot))

    @activity.defn(name="driver.create_volume_from_snapshot")
    async def create_volume_from_snapshot(self, request: VolumeFromSnapshot) -> dict[str, Any]:
        def call() -> dict[str, Any] | None:
            return self.driver.create_volume_from_snapshot(request.volume, request.snapshot)

        return await self._call("create_volume_from_snapshot", call) or {}

    @activity.defn(name="driver.create_cloned_volume")
    async def create_cloned_volume(self, request: VolumeClone) -> dict[str, Any]:
        def call() -> dict[str, Any] | None:
            return self.driver.create_cloned_volume(request.volume, request.source)

        return await self._call("create_cloned_volume", call) or {}

    @activity.defn(name="driver.extend_volume")
    async def extend_volume(self, request: ExtendRequest) -> str:
        """`done`, or `needs_compute_completion` when a compute process holds the volume."""

        def call() -> str:
            return str(self.driver.extend_volume(request.volume, request.new_size))

        return await self._call("extend_volume", call)

    @activity.defn(name="driver.initialize_connection")
    async def initialize_connection(self, connection: Connection) -> dict[str, Any]:
        """Export the volume to the connector; returns Cinder's connection info, with the
        access mode, encryption flag and attachment id consumers (Nova, os-brick) read."""

        def call() -> dict[str, Any]:
            return self.driver.initialize_connection(connection.volume, connection.connector)

        info = await self._call("initialize_connection", call)
        data = {
            **info.get("data", {}),
            "access_mode": connection.attach_mode,
            "encrypted": connection.volume.encryption_key_id is not None,
            "volume_id": connection.volume.id,
        }
        return {**info, "data": data, "attachment_id": connection.attachment_id}

    @activity.defn(name="driver.terminate_connection")
    async def terminate_connection(self, connection: Connection) -> None:
        def call() -> None:
            self.driver.terminate_connection(connection.volume, connection.connector or None)

        await self._call("terminate_connection", call)

    @activity.defn(name="driver.reset_state")
    async def reset_state(self, reset: DriverReset) -> str:
        """Make the backend match a reset: `done`, or `not_implemented` by this driver."""

        def call() -> str:
            try:
                self.driver.reset_state(reset.volume, reset.status, reset.attach_status)
            except NotImplementedError:
                return "not_implemented"
            return "done"

        return await self._call("reset_state", call)

    def all(self) -> list[Any]:
        """Every driver activity, for registration on the backend's worker."""
        return [
            self.create_volume,
            self.delete_volume,
            self.create_snapshot,
            self.delete_snapshot,
            self.create_volume_from_snapshot,
            self.create_cloned_volume,
            self.initialize_connection,
            self.terminate_connection,
            self.extend_volume,
            self.reset_state,
        ]
