"""Idempotency keys past their window are removed by the control worker's reaper (the API
ignores them already: api/idempotency.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session

from cinderflow.db.models import IdempotencyKey, utcnow


def prune(session: Session, retention: float) -> int:
    """Remove keys older than `retention` seconds."""
    cutoff = utcnow() - timedelta(seconds=retention)
    result = session.exec(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return result.rowcount or 0
