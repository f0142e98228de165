"""What changes between two volume types: Cinder's `volume_types_diff`, which a retype hands to
the driver (`SupportsRetype.retype`) and by which it decides between in place and a copy."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from cinderflow.db import volumes as volume_db


def types_diff(session: Session, old_type_id: str, new_type_id: str) -> dict[str, Any]:
    """`{"extra_specs": {key: [old, new]}, "encryption": {field: [old, new]}}` for the keys
    that differ (None where a type lacks the key or the encryption), and `equal`."""
    old_encryption = volume_db.encryption_spec(session, old_type_id)
    new_encryption = volume_db.encryption_spec(session, new_type_id)
    specs = _changed(
        volume_db.extra_specs(session, old_type_id), volume_db.extra_specs(session, new_type_id)
    )
    encryption = _changed(
        old_encryption.model_dump() if old_encryption else {},
        new_encryption.model_dump() if new_encryption else {},
    )
    return {"extra_specs": specs, "encryption": encryption, "equal": not specs and not encryption}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }
