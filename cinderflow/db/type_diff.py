"""What changes between two volume types: Cinder's `volume_types_diff`, which a retype hands to
the driver (`SupportsRetype.retype`) and by which it decides between in place and a copy."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from cinderflow.db import volumes as volume_db


def types_diff(session: Session, old_type_id: str, new_type_id: str) -> dict[str, Any]:
    """`{"extra_specs": {key: [old, new]}, "encryption": {field: [old, new]}}` for the keys
    that differ (None where a type lacks the key or the encryption), and `equal`."""
    old_specs = volume_db.extra_specs(session, old_type_id)
    new_specs = volume_db.extra_specs(session, new_type_id)
    specs = {
        key: [old_specs.get(key), new_specs.get(key)]
        for key in sorted(old_specs.keys() | new_specs.keys())
        if old_specs.get(key) != new_specs.get(key)
    }
    old_encryption = volume_db.encryption_spec(session, old_type_id)
    new_encryption = volume_db.encryption_spec(session, new_type_id)
    before = old_encryption.model_dump() if old_encryption else {}
    after = new_encryption.model_dump() if new_encryption else {}
    encryption = {
        field: [before.get(field), after.get(field)]
        for field in sorted(before.keys() | after.keys())
        if before.get(field) != after.get(field)
    }
    return {"extra_specs": specs, "encryption": encryption, "equal": not specs and not encryption}
