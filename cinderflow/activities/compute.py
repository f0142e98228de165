"""Telling the compute service about extended volumes and asking it to swap a migrating
volume (control queue; HTTP, no database)."""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.activities.group import ActivityGroup
from cinderflow.compute import ComputeClient, ComputeError
from cinderflow.payloads import ComputeEvent, SwapRequest
from cinderflow.settings import Settings

log = logging.getLogger(__name__)

NO_COMPUTE = "NoComputeConfigured"
COMPUTE_FAILED = "ComputeEventFailed"


class ComputeActivities(ActivityGroup):
    def __init__(self, settings: Settings) -> None:
        self.client = ComputeClient.from_settings(settings)

    def _client(self) -> ComputeClient:
        """The compute API's client; unconfigured ends the attempt (no retry helps)."""
        if self.client is None:
            raise ApplicationError(
                "no compute endpoint is configured (CINDERFLOW_COMPUTE_ENDPOINT)",
                type=NO_COMPUTE,
                non_retryable=True,
            )
        return self.client

    @activity.defn(name="compute.volume_extended")
    async def volume_extended(self, event: ComputeEvent) -> None:
        """Send `volume-extended` for each server; refused ends the attempt. Unconfigured ends
        it too when the compute must complete the extend; after an extend the driver has done,
        the event only tells the guests, and without a compute there is no one to tell."""
        if self.client is None and not event.requires_completion:
            log.info(
                "no compute endpoint configured; not telling servers %s about the extend of "
                "volume %s",
                ", ".join(event.server_uuids),
                event.volume_id,
            )
            return
        client = self._client()
        try:
            await client.volume_extended(
                event.server_uuids, event.volume_id, requires_completion=event.requires_completion
            )
        except ComputeError as error:
            raise ApplicationError(str(error), type=COMPUTE_FAILED) from error

    @activity.defn(name="compute.swap_volume")
    async def swap_volume(self, request: SwapRequest) -> None:
        """Ask the compute to move the server's disk to the new volume (it answers later)."""
        client = self._client()
        try:
            await client.swap_volume(
                request.server_id, request.old_volume_id, request.new_volume_id
            )
        except ComputeError as error:
            raise ApplicationError(str(error), type=COMPUTE_FAILED, non_retryable=True) from error
