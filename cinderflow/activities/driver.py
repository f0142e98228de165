"""Driver calls, registered once per backend on that backend's task queue.

The driver runs in a thread with its call context (drivers/call.py) while the activity
heartbeats, carrying the call's latest progress as heartbeat details; so a dead worker is
noticed after the heartbeat timeout, the call is retried elsewhere (drivers are idempotent) and
the retry sees how far the last attempt got. What the driver raises decides what happens next
(drivers/base.py): VolumeDriverError and NotImplementedError end the operation's call
(non-retryable), BackendTemporarilyUnavailable and anything else are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.activities.group import ActivityGroup
from cinderflow.activities.images import ImageStaging
from cinderflow.drivers.base import (
    BackendTemporarilyUnavailable,
    ModelUpdate,
    SnapshotRef,
    SupportsImageCopy,
    SupportsReset,
    SupportsRetype,
    SupportsTransfer,
    SupportsVolumeCopy,
    VolumeDriver,
    VolumeDriverError,
    VolumeRef,
)
from cinderflow.drivers.call import DriverCall
from cinderflow.failpoints import Failpoints
from cinderflow.payloads import (
    Connection,
    DriverReset,
    ExtendRequest,
    ImageToVolume,
    Retyped,
    RetypeRequest,
    TransferRequest,
    VolumeClone,
    VolumeCopy,
    VolumeFromSnapshot,
    VolumeToImage,
)
from cinderflow.threads import run_blocking

MIN_HEARTBEAT_INTERVAL_S = 0.2
MAX_HEARTBEAT_INTERVAL_S = 2.0
"""Beat at least this often (the worker lets them through as often, temporal/worker.py): a
cancellation arrives with a heartbeat's answer, so a reset reaches a driver call in seconds."""
RESET_NOT_IMPLEMENTED = "not_implemented"
SIGNAL_WAIT_S = 2.0
PROGRESS_INTERVAL_S = 0.5
"""How often a copy's progress is looked at (a signal only when its whole percent grew)."""
COPY_PROGRESS_SIGNAL = "copy_progress"
"""The signal a copy sends its workflow each time its percentage grows (at most 100)."""

T = TypeVar("T")


async def heartbeating(
    work: Awaitable[T],
    call: DriverCall | None = None,
    on_beat: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> T:
    """Await `work`, heartbeating (with the call's progress) at a third of the heartbeat
    timeout until it is done. The first beat is sent after that interval, not at once: most
    calls end sooner, and each beat is a write to the workflow's state on the server.

    A cancellation before the driver method has started ends the activity at once (and the
    method never starts). Once it runs, it changes the backend and cannot be interrupted: the
    call is told (`cancelled()` turns true, so a driver that can stops early) and the activity
    ends only when the driver does: with its result if it completed, as cancelled if it
    stopped (raised). So the operation, which waits for the cancellation to complete, never
    moves on while its driver call still changes the backend, and a cut stays a cut."""
    timeout = activity.info().heartbeat_timeout
    third = timeout.total_seconds() / 3 if timeout else MAX_HEARTBEAT_INTERVAL_S
    interval = min(max(third, MIN_HEARTBEAT_INTERVAL_S), MAX_HEARTBEAT_INTERVAL_S)
    task = asyncio.ensure_future(work)
    try:
        try:
            await _beat_until_done(task, call, interval, on_beat)
        except asyncio.CancelledError:
            if call is None or not call.cancel():
                raise
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await _beat_until_done(task, call, interval, None)
            if task.exception() is not None:
                raise asyncio.CancelledError from task.exception()  # it stopped as asked
        return task.result()
    finally:
        task.cancel()


async def _beat_until_done(
    task: asyncio.Future[Any],
    call: DriverCall | None,
    interval: float,
    on_beat: Callable[[dict[str, Any]], Awaitable[None]] | None,
) -> None:
    """Heartbeat every `interval`; a call whose progress is watched (`on_beat`) is looked at
    every PROGRESS_INTERVAL_S in between, so its percentage is shown as it grows."""
    tick = min(interval, PROGRESS_INTERVAL_S) if on_beat is not None else interval
    loop = asyncio.get_running_loop()
    last_beat = loop.time()
    while not task.done():
        await asyncio.wait({task}, timeout=tick)
        if task.done():
            return
        details = call.details() if call is not None else None
        if loop.time() - last_beat >= interval - 0.01:
            activity.heartbeat(*([details] if details else []))
            last_beat = loop.time()
        if details and on_beat is not None:
            await on_beat(details)


def percent_of(details: dict[str, Any] | None) -> int | None:
    """A call's progress (`done` of `total`) in whole percent."""
    if not details or not details.get("total"):
        return None
    return min(100, int(100 * details["done"] / details["total"]))


class ProgressSignal:
    """Tell the activity's workflow how far its copy got, once per percent: the workflow shows
    it (current details, `progress` query, a volume's `migration_progress`), which it could
    not see in the heartbeats. Best effort: a lost signal is made up by the next."""

    def __init__(self) -> None:
        self.sent: int | None = None

    async def __call__(self, details: dict[str, Any]) -> None:
        percent = percent_of(details)
        if percent is None or (self.sent is not None and percent <= self.sent):
            return
        info = activity.info()
        handle = activity.client().get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        )
        try:  # never long: the heartbeats must go on
            await asyncio.wait_for(handle.signal(COPY_PROGRESS_SIGNAL, percent), SIGNAL_WAIT_S)
        except Exception as error:  # the server is briefly away: the next beat tries again
            activity.logger.debug("progress signal not sent: %s", error)
            return
        self.sent = percent


def as_activity_error(error: Exception) -> ApplicationError:
    """A driver's failure as Temporal should treat it: transient ones are retried."""
    message = str(error) or type(error).__name__
    if isinstance(error, BackendTemporarilyUnavailable):
        return ApplicationError(message, type=type(error).__name__, non_retryable=False)
    if isinstance(error, NotImplementedError):
        message = str(error) or "not supported by this driver"
    return ApplicationError(message, type=type(error).__name__, non_retryable=True)


def _resumed() -> dict[str, Any] | None:
    """The progress the previous attempt of this activity reported last, if any."""
    details = activity.info().heartbeat_details
    return details[0] if details and isinstance(details[0], dict) else None


class DriverActivities(ActivityGroup):
    def __init__(
        self,
        driver: VolumeDriver,
        failpoints: Failpoints,
        executor: Executor | None = None,
        staging: ImageStaging | None = None,
    ) -> None:
        self.driver = driver
        self.failpoints = failpoints
        self.executor = executor
        self.staging = staging

    async def _call(
        self,
        name: str,
        fn: Callable[[], T],
        on_beat: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> T:
        call = DriverCall(
            attempt=activity.info().attempt,
            resumed=_resumed(),
            checkpoint=lambda point: self.failpoints.reach_blocking(f"driver.{name}.{point}"),
        )

        async def guarded() -> T:
            await self.failpoints.reach(f"driver.{name}.before")
            try:
                result = await run_blocking(self.executor, call.run, fn)
            except (VolumeDriverError, NotImplementedError, BackendTemporarilyUnavailable) as e:
                raise as_activity_error(e) from e
            await self.failpoints.reach(f"driver.{name}.after")
            return result

        return await heartbeating(guarded(), call, on_beat)

    @activity.defn(name="driver.create_volume")
    async def create_volume(self, volume: VolumeRef) -> dict[str, Any]:
        return await self._call("create_volume", lambda: self.driver.create_volume(volume)) or {}

    @activity.defn(name="driver.delete_volume")
    async def delete_volume(self, volume: VolumeRef) -> None:
        """Delete the volume on the backend, and any image this worker was staging for it."""

        def call() -> None:
            self.driver.delete_volume(volume)
            if self.staging is not None:
                self.staging.discard(volume.id)

        await self._call("delete_volume", call)

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
        def call() -> ModelUpdate:
            return self.driver.create_volume_from_snapshot(request.volume, request.snapshot)

        return await self._call("create_volume_from_snapshot", call) or {}

    @activity.defn(name="driver.create_cloned_volume")
    async def create_cloned_volume(self, request: VolumeClone) -> dict[str, Any]:
        def call() -> ModelUpdate:
            return self.driver.create_cloned_volume(request.volume, request.source)

        return await self._call("create_cloned_volume", call) or {}

    @activity.defn(name="driver.extend_volume")
    async def extend_volume(self, request: ExtendRequest) -> str:
        """`done`, or `needs_compute_completion` when a compute process holds the volume."""

        def call() -> str:
            return str(self.driver.extend_volume(request.volume, request.new_size))

        return await self._call("extend_volume", call)

    @activity.defn(name="driver.retype")
    async def retype(self, request: RetypeRequest) -> Retyped:
        """The driver's in-place retype; not done if it cannot (or cannot retype at all)."""
        driver = self.driver
        if not isinstance(driver, SupportsRetype):
            return Retyped(done=False)

        def call() -> Retyped:
            done, update = driver.retype(
                request.volume, request.new_type.model_dump(), request.diff, request.host
            )
            return Retyped(done=bool(done), update=update or {})

        return await self._call("retype", call)

    @activity.defn(name="driver.accept_transfer")
    async def accept_transfer(self, request: TransferRequest) -> dict[str, Any]:
        """Tell the backend the volume changes project (a driver that need not know: {})."""
        driver = self.driver
        if not isinstance(driver, SupportsTransfer):
            return {}

        def call() -> ModelUpdate:
            return driver.accept_transfer(request.volume, request.new_user, request.new_project)

        return await self._call("accept_transfer", call) or {}

    @activity.defn(name="driver.copy_volume_data")
    async def copy_volume_data(self, request: VolumeCopy) -> None:
        """A migration's copy, on the destination's backend, its percentage signalled to the
        workflow as it grows."""
        driver = self.driver
        if not isinstance(driver, SupportsVolumeCopy):
            raise ApplicationError(
                f"backend {driver.backend_name} cannot copy volume data (its driver lacks "
                "SupportsVolumeCopy)",
                type="NotImplementedError",
                non_retryable=True,
            )

        def call() -> None:
            driver.copy_volume_data(request.target, request.source, request.source_connection)

        await self._call("copy_volume_data", call, ProgressSignal())

    def _image_driver(self) -> tuple[SupportsImageCopy, ImageStaging]:
        driver = self.driver
        if not isinstance(driver, SupportsImageCopy) or self.staging is None:
            raise ApplicationError(
                f"backend {driver.backend_name} cannot copy images (its driver lacks "
                "SupportsImageCopy, or no image service is configured)",
                type="NotImplementedError",
                non_retryable=True,
            )
        return driver, self.staging

    @activity.defn(name="driver.copy_image_to_volume")
    async def copy_image_to_volume(self, request: ImageToVolume) -> dict[str, Any]:
        """Download the image to this worker and have the driver make the volume from it;
        the percentage (download, then conversion) is signalled to the workflow."""
        driver, staging = self._image_driver()

        def call() -> ModelUpdate:
            with staging.downloaded(request) as image:
                return driver.copy_image_to_volume(request.volume, image)

        return await self._call("copy_image_to_volume", call, ProgressSignal()) or {}

    @activity.defn(name="driver.copy_volume_to_image")
    async def copy_volume_to_image(self, request: VolumeToImage) -> None:
        """Have the driver write the volume into a file on this worker, then upload it as the
        image's data (once: an image already `active` is this upload's earlier attempt's)."""
        driver, staging = self._image_driver()

        def call() -> None:
            with staging.to_upload(request) as image:
                driver.copy_volume_to_image(request.volume, image)

        await self._call("copy_volume_to_image", call, ProgressSignal())

    @activity.defn(name="driver.discard_image_staging")
    async def discard_image_staging(self, volume_id: str) -> None:
        """Remove what this worker stages for the volume (an upload's undo: a killed attempt
        leaves the volume's data in a staging file)."""
        if self.staging is not None:
            await run_blocking(self.executor, self.staging.discard, volume_id)

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
        driver = self.driver
        if not isinstance(driver, SupportsReset):
            return RESET_NOT_IMPLEMENTED

        def call() -> str:
            driver.reset_state(reset.volume, reset.status, reset.attach_status)
            return "done"

        return await self._call("reset_state", call)
