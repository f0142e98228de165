"""Task-queue names. Pure functions: workflow code uses them to route driver activities."""

from __future__ import annotations

BACKEND_QUEUE_PREFIX = "backend:"


def backend_of(host: str) -> str:
    """`host@backend#pool` -> `host@backend` (the volume service that owns the pool)."""
    return host.partition("#")[0]


def backend_queue(host: str) -> str:
    """Driver activities for a volume on `host@backend[#pool]` run on `backend:host@backend`."""
    return BACKEND_QUEUE_PREFIX + backend_of(host)
