"""A client for the image service (Glance v2), acting for the user who asked.

Only what cinderflow needs: show an image, download its data to a file, create an image
record (with an id cinderflow chose, so a retried create finds its own), set properties,
upload a file as its data, delete it. Like `compute.py`, one small module over httpx.

Identity: without Keystone (`noauth`) the calls carry the headers keystonemiddleware would
have set for the user (`X-Identity-Status: Confirmed`, `X-User-Id`, `X-Project-Id`,
`X-Roles`), which is what a Glance behind the `context` filter trusts. Nothing here takes a
token from a workflow's input: identities are ids and role names, never secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cinderflow.payloads import ImageIdentity, ImageSource
from cinderflow.settings import Settings

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
CHUNK = 1 << 20

ENCRYPTION_KEY_PROPERTIES = ("os_encrypt_key_id", "cinder_encryption_key_id")
"""Where an encrypted image names its secret (the spec's name first, Cinder's legacy one)."""
ENCRYPTION_PROPERTIES = (
    "os_encrypt_format",
    "os_encrypt_key_id",
    "os_encrypt_key_deletion_policy",
    "os_decrypt_size",
    "cinder_encryption_key_id",
    "cinder_encryption_key_deletion_policy",
)
CORE_FIELDS = (
    "name",
    "disk_format",
    "container_format",
    "checksum",
    "size",
    "min_disk",
    "min_ram",
)
"""Image fields a volume keeps in its image metadata (Cinder's glance_metadata), besides
`image_id`/`image_name` and the image's own properties."""
NOT_PROPERTIES = {
    "id",
    "status",
    "visibility",
    "protected",
    "created_at",
    "updated_at",
    "tags",
    "owner",
    "file",
    "schema",
    "self",
    "direct_url",
    "locations",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "stores",
    *CORE_FIELDS,
}


NOT_INHERITED_PREFIXES = ("os_glance_", "img_signature")
"""Glance's own properties (refused on any new image) and the old image's signature (which
the new image's data would fail)."""


class ImageServiceError(Exception):
    """The image service failed or is unreachable: worth trying again later."""


class ImageRefused(Exception):
    """The image service answered the request with a refusal (4xx): trying again won't help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ImageNotFound(ImageRefused):
    def __init__(self, image_id: str) -> None:
        super().__init__(404, f"Image {image_id} could not be found.")
        self.image_id = image_id


def image_source(image: dict[str, Any]) -> ImageSource:
    """What creating a volume needs to know of a Glance image, its encryption included."""
    key_id = next((image[p] for p in ENCRYPTION_KEY_PROPERTIES if image.get(p)), None)
    encrypted = bool(
        key_id or image.get("os_encrypt_format") or image.get("container_format") == "luks"
    )
    return ImageSource(
        id=str(image["id"]),
        name=_str_or_none(image.get("name")),
        status=str(image.get("status") or ""),
        disk_format=str(image.get("disk_format") or ""),
        container_format=str(image.get("container_format") or ""),
        size=_int_or_none(image.get("size")) or 0,
        virtual_size=_int_or_none(image.get("virtual_size")),
        min_disk=_int_or_none(image.get("min_disk")) or 0,
        checksum=_str_or_none(image.get("checksum")),
        encrypted=encrypted,
        key_id=_str_or_none(key_id),
        decrypt_size=_int_or_none(image.get("os_decrypt_size")),
    )


def volume_image_metadata(image: dict[str, Any]) -> dict[str, str]:
    """The image metadata a volume made from `image` keeps (shown as volume_image_metadata);
    the encryption properties stay with the image (the volume has its own key)."""
    kept = {"image_id": str(image["id"]), "image_name": str(image.get("name") or "")}
    for field in CORE_FIELDS:
        if image.get(field) is not None and field != "name":
            kept[field] = str(image[field])
    for name, value in image.items():
        if name in NOT_PROPERTIES or name in ENCRYPTION_PROPERTIES or value is None:
            continue
        if name.startswith(NOT_INHERITED_PREFIXES):
            continue
        kept[name] = value if isinstance(value, str) else str(value)
    return kept


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


class ImageClient:
    def __init__(self, endpoint: str, identity: ImageIdentity) -> None:
        base = endpoint.rstrip("/")
        self.base = base if base.endswith("/v2") else f"{base}/v2"
        self.identity = identity

    @classmethod
    def from_settings(cls, settings: Settings, identity: ImageIdentity) -> ImageClient | None:
        if not settings.image_endpoint:
            return None
        return cls(settings.image_endpoint, identity)

    def _headers(self) -> dict[str, str]:
        return {
            "X-Identity-Status": "Confirmed",
            "X-User-Id": self.identity.user_id,
            "X-Project-Id": self.identity.project_id,
            "X-Tenant-Id": self.identity.project_id,
            "X-Roles": ",".join(self.identity.roles),
        }

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=TIMEOUT, headers=self._headers())

    def _check(self, response: httpx.Response, image_id: str | None = None) -> httpx.Response:
        if response.status_code == 404 and image_id is not None:
            raise ImageNotFound(image_id)
        if response.status_code >= 500:
            raise ImageServiceError(
                f"image service answered {response.status_code}: {response.text[:300]}"
            )
        if response.status_code >= 400:
            raise ImageRefused(
                response.status_code,
                f"image service refused ({response.status_code}): {response.text[:300]}",
            )
        return response

    def _send(self, method: str, path: str, image_id: str | None = None, **kw: Any) -> Any:
        try:
            with self._client() as client:
                response = client.request(method, f"{self.base}{path}", **kw)
        except httpx.HTTPError as error:
            raise ImageServiceError(f"image service unreachable: {error!r}") from error
        return self._check(response, image_id)

    def show(self, image_id: str) -> dict[str, Any]:
        found = self._send("GET", f"/images/{_segment(image_id)}", image_id).json()
        if not isinstance(found, dict) or found.get("id") != image_id:
            raise ImageServiceError(f"image service answered a malformed image: {found!r:.200}")
        return found

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the image record; one that exists with this id already is this create's
        earlier attempt (the id is the caller's)."""
        try:
            return self._send("POST", "/images", json=body).json()
        except ImageRefused as refused:
            if refused.status == 409 and body.get("id"):
                return self.show(body["id"])
            raise

    def update(self, image_id: str, properties: dict[str, str]) -> dict[str, Any]:
        """Add (or replace) properties, as a JSON patch."""
        patch = [{"op": "add", "path": f"/{k}", "value": v} for k, v in properties.items()]
        return self._send(
            "PATCH",
            f"/images/{_segment(image_id)}",
            image_id,
            content=_json(patch),
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
        ).json()

    def set_protected(self, image_id: str, protected: bool) -> None:
        patch = [{"op": "replace", "path": "/protected", "value": protected}]
        self._send(
            "PATCH",
            f"/images/{_segment(image_id)}",
            image_id,
            content=_json(patch),
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
        )

    def delete(self, image_id: str, *, claim: bool = False) -> None:
        """Delete; an image already gone is fine (retries, compensation). A protected one
        (an upload stopped after it protected its image) is unprotected first.

        `claim`: first create the record with this id if it does not exist, so that a create
        of it still in flight (a cut step's) lands on a deleted id and is refused: the image
        service never reuses one."""
        if claim:  # refused (409: the id was used, deleted or not) is as good
            with contextlib.suppress(ImageRefused):
                self.create({"id": image_id})
        try:
            try:
                self._send("DELETE", f"/images/{_segment(image_id)}", image_id)
            except ImageRefused as refused:
                if refused.status != 403:
                    raise
                self.set_protected(image_id, False)
                self._send("DELETE", f"/images/{_segment(image_id)}", image_id)
        except ImageNotFound:
            return

    def download(
        self,
        image_id: str,
        target: Path,
        *,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> str:
        """Stream the image's data into `target` (created private); the MD5 of what came,
        checked by the caller against the image's `checksum`."""
        digest = hashlib.md5(usedforsecurity=False)
        done = 0
        try:
            url = f"{self.base}/images/{_segment(image_id)}/file"
            with self._client() as client, client.stream("GET", url) as response:
                self._check(response, image_id)
                if response.status_code == 204:
                    raise ImageRefused(204, f"image {image_id} has no data")
                with open(private_file(target), "wb") as handle:
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done)
                        if stop is not None and stop():
                            raise ImageServiceError("the download was stopped")
        except httpx.HTTPError as error:
            raise ImageServiceError(f"image download failed: {error!r}") from error
        return digest.hexdigest()

    def upload(
        self,
        image_id: str,
        source: Path,
        *,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Upload `source` as the image's data (the image becomes `active`)."""

        def chunks() -> Iterator[bytes]:
            done = 0
            with open(source, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    if stop is not None and stop():
                        raise ImageServiceError("the upload was stopped")
                    done += len(chunk)
                    yield chunk
                    if progress is not None:
                        progress(done)

        self._send(
            "PUT",
            f"/images/{_segment(image_id)}/file",
            image_id,
            content=chunks(),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(source.stat().st_size),
            },
        )


def _segment(image_id: str) -> str:
    """An image id as one URL path segment (callers pass UUIDs; this keeps it so)."""
    return quote(image_id, safe="")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 (image data may be a user's private disk)."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path
