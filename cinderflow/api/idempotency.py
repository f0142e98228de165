"""`Idempotency-Key` on the POSTs that start operations: a retried request gets the first
one's response and starts nothing.

cinder-csi retries a create after a timeout and ends with a dozen volumes (cloud-provider-
openstack #1403); a retried extend fails "New size for extend must be greater than current
size" (#1265). With a key, the same request from the same project within
`idempotency_key_retention` seconds is answered with the first response (same volume id, same
202, header `Idempotent-Replayed: true`); another request under the key is 409.

The key is claimed in the transaction of the state change itself (`claim`, called by the
hand-over and by the few operation-starting routes that hand nothing over): of two parallel
requests with one key, one commits its change with the key, the other's claim fails, its
whole transaction rolls back, and it answers with the first one's response once that is
stored. Errors are not kept (nothing changed: a retry is a new attempt).

The database keeps the key only as a hash, and the response sealed (AES-GCM) under a key
derived from the client's key: a transfer's auth key in a stored response is no more readable
from the database than from its salted hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cinderflow.api.errors import BadRequest, Conflict
from cinderflow.db.engine import Database
from cinderflow.db.models import IdempotencyKey, utcnow

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEY_FORMAT = re.compile(r"^[\x21-\x7e]{1,255}$")
"""Printable ASCII without spaces, as the IETF draft's examples (UUIDs, ULIDs, hashes)."""
WAIT_FOR_FIRST_S = 60.0
"""How long a repeat waits for the first request under its key to answer."""


class KeyTaken(Exception):
    """Another request committed a change under the key first: this transaction rolls back."""


@dataclass
class Claim:
    """The request's key, to be claimed by its state-changing transaction."""

    project_id: str
    key_hash: str
    fingerprint: str
    retention: float
    claimed: bool = False


CLAIM: ContextVar[Claim | None] = ContextVar("cinderflow_idempotency_claim", default=None)


def claim(session: Session) -> None:
    """Claim the request's key in `session`'s transaction (once per request): KeyTaken if a
    request under it committed first, which rolls this transaction back."""
    pending = CLAIM.get()
    if pending is None or pending.claimed:
        return
    expired = utcnow() - timedelta(seconds=pending.retention)
    session.exec(
        delete(IdempotencyKey).where(
            IdempotencyKey.project_id == pending.project_id,
            IdempotencyKey.key == pending.key_hash,
            IdempotencyKey.created_at < expired,
        )
    )
    if session.get(IdempotencyKey, (pending.project_id, pending.key_hash)) is not None:
        raise KeyTaken
    session.add(
        IdempotencyKey(
            project_id=pending.project_id,
            key=pending.key_hash,
            fingerprint=pending.fingerprint,
        )
    )
    try:
        session.flush()
    except IntegrityError:  # a parallel request's claim committed meanwhile (PostgreSQL)
        raise KeyTaken from None
    pending.claimed = True


def _fingerprint(request: Request, path: str, version: str, data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    for part in (request.method.encode(), path.encode(), version.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _sealing_key(key: str) -> bytes:
    return hmac.new(key.encode(), b"cinderflow idempotent response", hashlib.sha256).digest()


def _seal(key: str, plain: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_sealing_key(key)).encrypt(nonce, plain, None)


def _open(key: str, sealed: bytes) -> bytes | None:
    try:
        return AESGCM(_sealing_key(key)).decrypt(sealed[:12], sealed[12:], None)
    except InvalidTag:
        return None


class Guard:
    """Wraps one operation-starting POST of one request (api/routing.py)."""

    def __init__(self, db: Database, request: Request, project_id: str, retention: float) -> None:
        self.db = db
        self.request = request
        self.project_id = project_id
        self.retention = retention
        self.key = request.headers[HEADER]
        if not KEY_FORMAT.match(self.key):
            raise BadRequest(
                "Invalid Idempotency-Key: 1 to 255 printable ASCII characters without spaces."
            )
        self.key_hash = hashlib.sha256(self.key.encode()).hexdigest()

    async def run(
        self, handler: Callable[[], Awaitable[Response]], path: str, version: str, data: Any
    ) -> Response:
        """`data`: the request's body as parsed (the same JSON in any spacing or key order
        is the same request)."""
        fingerprint = _fingerprint(self.request, path, version, data)
        replay = await self._replay(fingerprint)
        for _attempt in range(3):
            if replay is not None:
                return replay
            pending = Claim(self.project_id, self.key_hash, fingerprint, self.retention)
            token = CLAIM.set(pending)
            try:
                response = await handler()
            except KeyTaken:
                # a parallel request under the key committed first: its answer is ours (or,
                # if it failed and freed the key, this request runs again)
                replay = await self._replay(fingerprint)
                continue
            except BaseException:
                if pending.claimed:  # failed after its change committed under the key
                    await run_in_threadpool(self._forget)
                raise
            finally:
                CLAIM.reset(token)
            if pending.claimed:
                if response.status_code < 400:
                    await run_in_threadpool(self._store, response)
                else:
                    await run_in_threadpool(self._forget)
            return response
        raise Conflict("Requests with this Idempotency-Key keep failing; use a new key.")

    async def _replay(self, fingerprint: str) -> Response | None:
        """The first response under the key, waited for while the first request still
        answers (None: the key is free); 409 for another request, or for a first one still
        answering after WAIT_FOR_FIRST_S."""
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        pause = 0.02
        while True:
            row = await run_in_threadpool(self._read)
            if row is None:  # free (or the first request failed and freed it)
                return None
            if row.fingerprint != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was used for another request within "
                    f"{int(self.retention)} seconds; use a new key for a new request."
                )
            if row.status_code is not None and row.response is not None:
                body = _open(self.key, row.response)
                if body is None:
                    raise Conflict("This Idempotency-Key was used for another request.")
                return Response(
                    body,
                    status_code=row.status_code,
                    media_type=row.content_type,
                    headers={REPLAYED: "true"},
                )
            if time.monotonic() >= deadline:
                raise Conflict(
                    "A request with this Idempotency-Key is still being answered; retry shortly."
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _read(self) -> IdempotencyKey | None:
        expired = utcnow() - timedelta(seconds=self.retention)
        with self.db.read() as session:
            row = session.get(IdempotencyKey, (self.project_id, self.key_hash))
            if row is None or _aware(row.created_at) < expired:
                return None
            return row

    def _store(self, response: Response) -> None:
        with self.db.transaction() as session:
            row = session.get(IdempotencyKey, (self.project_id, self.key_hash))
            if row is None:
                return
            row.status_code = response.status_code
            row.response = _seal(self.key, bytes(response.body))
            row.content_type = response.media_type or response.headers.get("content-type")
            session.add(row)

    def _forget(self) -> None:
        with self.db.transaction() as session:
            session.exec(
                delete(IdempotencyKey).where(
                    IdempotencyKey.project_id == self.project_id,
                    IdempotencyKey.key == self.key_hash,
                    IdempotencyKey.status_code.is_(None),
                )
            )


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
