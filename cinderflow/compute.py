"""A client for the compute API's external events (`POST /os-server-external-events`).

Only what cinderflow needs: telling the compute that a volume attached to its servers was
extended, and asking it to swap a server's disk to a migration's destination, as Cinder does
(`cinder/compute/nova.py`).
"""

from __future__ import annotations

from typing import Any

import httpx

from cinderflow.settings import Settings

TIMEOUT_S = 30.0


class ComputeError(Exception):
    """The event was not delivered (no compute configured, unreachable, or refused)."""


class ComputeClient:
    def __init__(
        self,
        endpoint: str,
        token: str | None,
        api_version: str,
        completion_api_version: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.api_version = api_version
        self.completion_api_version = completion_api_version or api_version
        self.token = token

    @classmethod
    def from_settings(cls, settings: Settings) -> ComputeClient | None:
        if not settings.compute_endpoint:
            return None
        return cls(
            settings.compute_endpoint,
            settings.compute_token,
            settings.compute_api_version,
            settings.compute_completion_api_version,
        )

    def _headers(self, version: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "OpenStack-API-Version": f"compute {version}",
            "X-OpenStack-Nova-API-Version": version,
        }
        if self.token:
            headers["X-Auth-Token"] = self.token
        return headers

    async def volume_extended(
        self, server_uuids: list[str], volume_id: str, *, requires_completion: bool = False
    ) -> None:
        """One `volume-extended` event per server; any event not accepted is an error."""
        events = [
            {"name": "volume-extended", "server_uuid": s, "tag": volume_id} for s in server_uuids
        ]
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                response = await client.post(
                    f"{self.endpoint}/os-server-external-events",
                    json={"events": events},
                    headers=self._headers(
                        self.completion_api_version if requires_completion else self.api_version
                    ),
                )
        except httpx.HTTPError as error:
            raise ComputeError(f"compute API unreachable: {error!r}") from error
        if response.status_code not in (200, 207):
            raise ComputeError(
                f"compute API answered {response.status_code}: {response.text[:300]}"
            )
        refused = [e for e in _events(response) if e.get("code", 200) != 200]
        if refused:
            raise ComputeError(f"compute refused events: {refused}")

    async def swap_volume(self, server_uuid: str, old_volume_id: str, new_volume_id: str) -> None:
        """Nova's swap volume (`PUT /servers/{id}/os-volume_attachments/{old}`), as Cinder asks
        for it to migrate an attached volume; the compute answers later, through
        os-migrate_volume_completion."""
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                response = await client.put(
                    f"{self.endpoint}/servers/{server_uuid}/os-volume_attachments/{old_volume_id}",
                    json={"volumeAttachment": {"volumeId": new_volume_id}},
                    headers=self._headers(self.api_version),
                )
        except httpx.HTTPError as error:
            raise ComputeError(f"compute API unreachable: {error!r}") from error
        if response.status_code != 202:
            raise ComputeError(
                f"compute API refused the swap: {response.status_code}: {response.text[:300]}"
            )


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        return list(response.json().get("events", []))
    except ValueError:
        return []
