"""Microversions: `OpenStack-API-Version: volume X.Y` negotiation and named feature versions.

A route says `since=mv.NEW_ATTACH`; a view field says `if req.version >= mv.VOLUME_TYPE_ID`.
The names follow Cinder's `cinder/api/microversions.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from cinderflow.api.errors import ApiError, BadRequest

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Volume-API-Version"
"""Not sent by any known client; accepted as an alias only."""
SERVICE_TYPE = "volume"
UPDATED = "2023-08-31T00:00:00Z"

_FORMAT = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@total_ordering
@dataclass(frozen=True)
class APIVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> APIVersion:
        match = _FORMAT.match(text.strip())
        if match is None:
            raise BadRequest(
                f"API Version String {text} is of invalid format. "
                "Must be of format MajorNum.MinorNum."
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __lt__(self, other: object) -> bool:
        if isinstance(other, str):
            other = APIVersion.parse(other)
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = APIVersion.parse(other)
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) == (other.major, other.minor)

    def __hash__(self) -> int:
        return hash((self.major, self.minor))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN_VERSION = APIVersion(3, 0)
MAX_VERSION = APIVersion(3, 72)

# Feature versions used by cinderflow (Cinder's constant names).
UPLOAD_IMAGE_VISIBILITY = "3.1"
MESSAGES = "3.3"
VOLUME_LIST_GLANCE_METADATA = "3.4"
MESSAGES_PAGINATION = "3.5"
CLUSTER_SUPPORT = "3.7"
GROUP_VOLUME = "3.13"
GROUP_SNAPSHOTS = "3.14"
VOLUME_DETAIL_PROVIDER_ID = "3.21"
SNAPSHOT_LIST_METADATA_FILTER = "3.22"
VOLUME_DELETE_FORCE = "3.23"
NEW_ATTACH = "3.27"
RESOURCE_FILTER = "3.31"
LIMITS_ADMIN_FILTER = "3.39"
SNAPSHOT_LIST_USER_ID = "3.41"
VOLUME_EXTEND_INUSE = "3.42"
NEW_ATTACH_COMPLETION = "3.44"
SUPPORT_COUNT_INFO = "3.45"
VOLUME_SHARED_TARGETS_AND_SERVICE_FIELDS = "3.48"
BACKEND_STATE_REPORT = "3.49"
MULTIATTACH_VOLUMES = "3.50"
SUPPORT_VOLUME_TYPE_FILTER = "3.52"
SUPPORT_VOLUME_SCHEMA_CHANGES = "3.53"
ATTACHMENT_CREATE_MODE_ARG = "3.54"
TRANSFER_WITH_SNAPSHOTS = "3.55"
TRANSFER_WITH_HISTORY = "3.57"
TRANSFER_PAGINATION = "3.59"
VOLUME_CLUSTER_NAME = "3.61"
VOLUME_TYPE_ID_IN_VOL_DETAILS = "3.63"
ENCRYPTION_KEY_ID_IN_DETAILS = "3.64"
USE_QUOTA = "3.65"
SNAPSHOT_IN_USE = "3.66"
PROJECT_ID_OPTIONAL_IN_URL = "3.67"
TRANSFER_ENCRYPTED_VOLUME = "3.70"
EXTEND_VOLUME_COMPLETION = "3.71"
MIGRATION_PROGRESS = "3.72"
"""cinderflow's first own microversion (spec migration-progress-in-volume-details): an
admin's volume show carries `migration_progress` while the volume is migrating."""


class VersionNotAcceptable(ApiError):
    code = 406


def negotiate(header: str | None, legacy: str | None = None) -> APIVersion:
    """The requested version: no header means 3.0, `latest` the maximum (406 outside range)."""
    requested = _volume_item(header) if header else None
    if requested is None and legacy:
        requested = legacy.strip()
    if requested is None:
        return MIN_VERSION
    if requested.lower() == "latest":
        return MAX_VERSION
    version = APIVersion.parse(requested)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionNotAcceptable(
            f"Version {version} is not supported by the API. "
            f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
        )
    return version


def _volume_item(header: str) -> str | None:
    """`compute 2.1, volume 3.5` -> `3.5` (the first item for our service type)."""
    for item in header.split(","):
        service, _, value = item.strip().partition(" ")
        if service.lower() == SERVICE_TYPE:
            return value.strip()
    return None
