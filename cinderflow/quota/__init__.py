"""Counting quotas (Cinder's quota-system spec, DynamicQuotaDriver semantics).

Usage is never stored: it is counted from live rows (volumes, snapshots) inside the transaction
that adds resources, after locking the project's `quota_locks` row, so it cannot drift and
parallel requests cannot overshoot a limit. Reservations exist only for operations whose
resource change happens later (extend, retype, transfer); each is keyed by the volume it is for,
so deleting or resetting that volume clears them.
"""

from cinderflow.quota.engine import (
    QuotaExceeded,
    check,
    limits,
    lock,
    release,
    reserve,
    reserved,
    usage,
    volume_deltas,
)

__all__ = [
    "QuotaExceeded",
    "check",
    "limits",
    "lock",
    "release",
    "reserve",
    "reserved",
    "usage",
    "volume_deltas",
]
