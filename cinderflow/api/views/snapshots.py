"""Snapshot views: summary (lists), detail (show, create, update; by microversion), and the
extended attributes (project, progress) on show and detailed lists."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.routing import ApiRequest
from cinderflow.api.views import Gate, gated, timestamp
from cinderflow.db.metadata import SNAPSHOTS, metadata_of
from cinderflow.db.models import Snapshot

GATES = (
    Gate("group_snapshot_id", mv.GROUP_SNAPSHOTS),
    Gate("user_id", mv.SNAPSHOT_LIST_USER_ID),
    Gate("consumes_quota", mv.USE_QUOTA),
)


def metadata(session: Session, snapshots: list[Snapshot]) -> dict[str, dict[str, str]]:
    return metadata_of(session, SNAPSHOTS, (s.id for s in snapshots))


def summary(snapshot: Snapshot, meta: dict[str, str]) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "created_at": timestamp(snapshot.created_at),
        "updated_at": timestamp(snapshot.updated_at),
        "name": snapshot.name,
        "description": snapshot.description,
        "volume_id": snapshot.volume_id,
        "status": snapshot.status,
        "size": snapshot.volume_size,
        "metadata": meta,
    }


def detail(
    req: ApiRequest, snapshot: Snapshot, meta: dict[str, str], *, extended: bool = False
) -> dict[str, Any]:
    view = summary(snapshot, meta)
    versioned = {"group_snapshot_id": None, "user_id": snapshot.user_id, "consumes_quota": True}
    view.update(gated(req, versioned, GATES))
    if extended and policy.allowed(
        req.ctx, "volume_extension:extended_snapshot_attributes", snapshot.project_id
    ):
        view["os-extended-snapshot-attributes:project_id"] = snapshot.project_id
        view["os-extended-snapshot-attributes:progress"] = snapshot.progress
    return view
