"""Stand-ins for cinderflow's activities, registered under the real activity names, for the
fast workflow tests: the real workflows run on a time-skipping test server, and each step can
be made to wait (a gate), to fail, or to answer what the test needs.

They do no I/O: the workflows are what is under test. Every call is recorded in order, and every
final write is kept for the test to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.drivers.base import ExtendOutcome, SnapshotRef, VolumeRef
from cinderflow.payloads import (
    ComputeEvent,
    Connection,
    DriverReset,
    ExtendCheck,
    ExtendPlan,
    ExtendRequest,
    FinalWrite,
    OperationPolicy,
    Placement,
    VolumeClone,
    VolumeFromSnapshot,
    VolumeMessage,
)

HOST = "stub@file"
QUICK = OperationPolicy(driver_heartbeat_timeout_s=1.0)
"""Heartbeats every 1/3 s, so a cut reaches a waiting stub at once."""
VOLUME = VolumeRef(id="v1", size=1, project_id="p", host=HOST)


class Stubs:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.writes: list[FinalWrite] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.failing: set[str] = set()
        self.running: set[str] = set()
        """Gated calls that behave as already running on the backend: a cancel does not
        stop them, they end when their gate opens (as a real driver thread)."""
        self.extend_outcome = ExtendOutcome.DONE
        self.servers: list[str] = []
        self.snapshots: list[SnapshotRef] = []

    def hold(self, name: str) -> asyncio.Event:
        """Make the activity `name` wait until the returned event is set."""
        self.gates[name] = asyncio.Event()
        return self.gates[name]

    def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    async def reached(self, name: str, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.entered[name].wait(), timeout)

    async def _enter(self, name: str) -> None:
        """Record the call; wait at its gate, heartbeating, as a driver call that has not
        begun on its backend: a cancel then ends it (recorded as `<name> cancelled`), unless
        the call is one of `running`."""
        self.calls.append(name)
        self.entered[name].set()
        gate = self.gates.get(name)
        while gate is not None and not gate.is_set():
            try:
                activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), 0.05)
            except asyncio.CancelledError:
                if name not in self.running:
                    self.calls.append(f"{name} cancelled")
                    raise
                self.calls.append(f"{name} asked to stop")
        if name in self.failing:
            raise ApplicationError(
                f"{name} failed (stub)", type="VolumeDriverError", non_retryable=True
            )

    # Control queue ------------------------------------------------------------------------

    @activity.defn(name="volume.load")
    async def load(self, volume_id: str) -> VolumeRef:
        await self._enter("volume.load")
        return VOLUME

    @activity.defn(name="scheduler.place_volume")
    async def place_volume(self, volume_id: str) -> Placement:
        await self._enter("scheduler.place_volume")
        return Placement(volume=VOLUME)

    @activity.defn(name="scheduler.check_extend")
    async def check_extend(self, check: ExtendCheck) -> str | None:
        await self._enter("scheduler.check_extend")
        return None

    @activity.defn(name="scheduler.plan_extend")
    async def plan_extend(self, check: ExtendCheck) -> ExtendPlan:
        await self._enter("scheduler.plan_extend")
        return ExtendPlan(volume=VOLUME, servers=self.servers)

    @activity.defn(name="volume.servers")
    async def servers_of(self, volume_id: str) -> list[str]:
        await self._enter("volume.servers")
        return self.servers

    @activity.defn(name="volume.await_compute")
    async def await_compute(self, request: ExtendRequest) -> None:
        await self._enter("volume.await_compute")

    @activity.defn(name="volume.connections")
    async def connections(self, volume_id: str) -> list[Connection]:
        await self._enter("volume.connections")
        return []

    @activity.defn(name="compute.volume_extended")
    async def volume_extended(self, event: ComputeEvent) -> None:
        await self._enter("compute.volume_extended")

    @activity.defn(name="snapshot.owned_of_volume")
    async def owned_of_volume(self, volume_id: str) -> list[SnapshotRef]:
        await self._enter("snapshot.owned_of_volume")
        return self.snapshots

    @activity.defn(name="keys.ensure_volume_key")
    async def ensure_volume_key(self, volume_id: str) -> VolumeRef:
        await self._enter("keys.ensure_volume_key")
        return VOLUME

    @activity.defn(name="keys.delete_volume_key")
    async def delete_volume_key(self, volume: VolumeRef) -> None:
        await self._enter("keys.delete_volume_key")

    @activity.defn(name="operation.finish")
    async def finish(self, write: FinalWrite) -> None:
        await self._enter("operation.finish")
        self.writes.append(write)

    @activity.defn(name="operation.record_message")
    async def record_message(self, message: VolumeMessage) -> None:
        await self._enter("operation.record_message")

    # The backend's queue ---------------------------------------------------------------------

    @activity.defn(name="driver.create_volume")
    async def create_volume(self, volume: VolumeRef) -> dict[str, Any]:
        await self._enter("driver.create_volume")
        return {"provider_location": "stub"}

    @activity.defn(name="driver.create_volume_from_snapshot")
    async def create_volume_from_snapshot(self, request: VolumeFromSnapshot) -> dict[str, Any]:
        await self._enter("driver.create_volume_from_snapshot")
        return {}

    @activity.defn(name="driver.create_cloned_volume")
    async def create_cloned_volume(self, request: VolumeClone) -> dict[str, Any]:
        await self._enter("driver.create_cloned_volume")
        return {}

    @activity.defn(name="driver.delete_volume")
    async def delete_volume(self, volume: VolumeRef) -> None:
        await self._enter("driver.delete_volume")

    @activity.defn(name="driver.delete_snapshot")
    async def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        await self._enter("driver.delete_snapshot")

    @activity.defn(name="driver.extend_volume")
    async def extend_volume(self, request: ExtendRequest) -> str:
        await self._enter("driver.extend_volume")
        return str(self.extend_outcome)

    @activity.defn(name="driver.reset_state")
    async def reset_state(self, reset: DriverReset) -> str:
        await self._enter("driver.reset_state")
        return "done"

    def control(self) -> list[Callable[..., Any]]:
        return [
            self.load,
            self.place_volume,
            self.check_extend,
            self.plan_extend,
            self.servers_of,
            self.await_compute,
            self.connections,
            self.volume_extended,
            self.owned_of_volume,
            self.ensure_volume_key,
            self.delete_volume_key,
            self.finish,
            self.record_message,
        ]

    def backend(self) -> list[Callable[..., Any]]:
        return [
            self.create_volume,
            self.create_volume_from_snapshot,
            self.create_cloned_volume,
            self.delete_volume,
            self.delete_snapshot,
            self.extend_volume,
            self.reset_state,
        ]


class SagaSteps:
    """The steps of the test saga (tests/workflow/saga.py): make and unmake things, and a
    piece of work that can be made to wait or fail."""

    def __init__(self, stubs: Stubs) -> None:
        self.stubs = stubs

    @activity.defn(name="test.make")
    async def make(self, thing: str) -> None:
        await self.stubs._enter(f"test.make {thing}")

    @activity.defn(name="test.unmake")
    async def unmake(self, thing: str) -> None:
        await self.stubs._enter(f"test.unmake {thing}")

    @activity.defn(name="test.work")
    async def work(self) -> None:
        await self.stubs._enter("test.work")

    def all(self) -> list[Callable[..., Any]]:
        return [self.make, self.unmake, self.work]
