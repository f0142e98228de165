"""Cinder's volume_types_diff over real database rows (the retype's in-place-or-copy input)."""

from __future__ import annotations

import uuid
from pathlib import Path

from cinderflow.db.engine import Database
from cinderflow.db.models import Encryption, VolumeType, VolumeTypeExtraSpec
from cinderflow.db.type_diff import types_diff
from cinderflow.drivers.base import VolumeRef
from cinderflow.drivers.file import FileDriver
from tests.conftest import Databases


def add_type(db: Database, specs: dict[str, str], cipher: str | None = None) -> str:
    type_id = str(uuid.uuid4())
    with db.transaction() as session:
        session.add(VolumeType(id=type_id, name=f"t-{type_id[:8]}"))
        session.flush()
        for key, value in specs.items():
            session.add(VolumeTypeExtraSpec(volume_type_id=type_id, key=key, value=value))
        if cipher:
            session.add(
                Encryption(
                    id=str(uuid.uuid4()),
                    volume_type_id=type_id,
                    provider="luks",
                    cipher=cipher,
                    key_size=256,
                    control_location="front-end",
                )
            )
    return type_id


def test_only_what_differs_with_both_sides(databases: Databases) -> None:
    db = Database(databases.new("sqlite"))
    try:
        old = add_type(db, {"volume_backend_name": "file", "tier": "gold"})
        same = add_type(db, {"volume_backend_name": "file", "tier": "gold"})
        new = add_type(db, {"volume_backend_name": "file", "iops": "100"}, cipher="aes-xts-plain64")
        with db.read() as session:
            assert types_diff(session, old, same) == {
                "extra_specs": {},
                "encryption": {},
                "equal": True,
            }
            diff = types_diff(session, old, new)
    finally:
        db.dispose()
    assert diff["extra_specs"] == {"iops": [None, "100"], "tier": ["gold", None]}
    assert diff["encryption"]["cipher"] == [None, "aes-xts-plain64"]
    assert diff["equal"] is False


def test_the_file_driver_retypes_in_place_unless_the_encryption_changes(tmp_path: Path) -> None:
    driver = FileDriver("files", {"path": str(tmp_path / "vols")})
    driver.do_setup()
    volume = VolumeRef(id="v-1", size=1, project_id="p", host="h@files#files")
    driver.create_volume(volume)
    inode = driver.path(volume).stat().st_ino
    specs_only = {"extra_specs": {"tier": ["gold", "silver"]}, "encryption": {}}
    assert driver.retype(volume, {}, specs_only, "h@files#files") == (True, None)
    assert driver.path(volume).stat().st_ino == inode  # nothing copied
    encrypted = {"extra_specs": {}, "encryption": {"cipher": [None, "aes-xts-plain64"]}}
    assert driver.retype(volume, {}, encrypted, "h@files#files") == (False, None)
