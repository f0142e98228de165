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
stored. An error before the change is not kept (nothing changed: a retry is a new attempt);
one after it (the change committed, then the request failed) is kept and replayed.

The database keeps the key only as a hash, and the response sealed (AES-GCM) under a key
derived from the client's key and the deployment's `idempotency_secret`: a transfer's auth key
or an attachment's connection info in a kept response is not readable from a database dump,
however guessable the client's keys are.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cinderflow.api.errors import (
    GENERIC_500,
    BadRequest,
    Conflict,
    ServiceUnavailable,
    fault_body,
)
from cinderflow.db.engine import Database
from cinderflow.db.models import IdempotencyKey, as_utc, utcnow
from cinderflow.files import secret_file
from cinderflow.settings import Settings

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEY_FORMAT = re.compile(r"^[\x21-\x7e]{1,255}$")
"""Printable ASCII without spaces, as the IETF draft's examples (UUIDs, ULIDs, hashes)."""
WAIT_FOR_FIRST_S = 60.0
"""How long a repeat waits for the first request under its key to answer."""
LOST_ANSWER_S = 300.0
"""A claim this old (at least twice the longest wait) without its answer lost it: its API
process died between commit and storing it."""
SECRET_FILE = "idempotency.secret"


class KeyTaken(Exception):
    """Another request committed a change under the key first: this transaction rolls back."""


@dataclass
class Claim:
    """The request's key, to be claimed by its state-changing transaction."""

    project_id: str
    key_hash: str
    fingerprint: str
    retention: float
    claim_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    resource_id: str | None = None
    claimed: bool = False
    """Written in a transaction (which may still roll back: only this claim's own row, found
    by `claim_id`, is ever completed)."""


CLAIM: ContextVar[Claim | None] = ContextVar("cinderflow_idempotency_claim", default=None)


def claim(session: Session, resource_id: str | None = None) -> None:
    """Claim the request's key in `session`'s transaction (once per request): KeyTaken if a
    request under it committed first, which rolls this transaction back. `resource_id`: what
    the change is about, named to a retry if the first answer is lost."""
    pending = CLAIM.get()
    if pending is None or pending.claimed:
        return
    session.flush()  # the change's own rows first: their errors are theirs, not the key's
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
            claim_id=pending.claim_id,
            resource_id=resource_id,
        )
    )
    try:
        session.flush()
    except IntegrityError:  # a parallel request's claim committed meanwhile (PostgreSQL)
        raise KeyTaken from None
    pending.resource_id = resource_id
    pending.claimed = True


def _fingerprint(request: Request, path: str, version: str, data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    for part in (request.method.encode(), path.encode(), version.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _sealing_key(secret: bytes, project_id: str, key: str) -> bytes:
    """The response's key: the client's key under the deployment's secret, so neither a
    database dump (guessable client keys) nor the client key alone opens it."""
    message = b"cinderflow idempotent response\0" + project_id.encode() + b"\0" + key.encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def _seal(sealing_key: bytes, plain: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(sealing_key).encrypt(nonce, plain, None)


def _open(sealing_key: bytes, sealed: bytes) -> bytes | None:
    try:
        return AESGCM(sealing_key).decrypt(sealed[:12], sealed[12:], None)
    except InvalidTag:
        return None


def load_secret(settings: Settings) -> bytes:
    """`idempotency_secret`, else `<data_dir>/idempotency.secret` (32 random bytes, made on
    first use, mode 0600). Every API process of a deployment needs the same one, or a
    retry answered by another process cannot be replayed (it is refused, never repeated)."""
    if settings.idempotency_secret is not None:
        value = settings.idempotency_secret.get_secret_value().encode()
        return hashlib.sha256(value).digest()
    if settings.database_url is not None:
        log.warning(
            "idempotency_secret is not set: this API process keeps its own in %s; API "
            "processes on other hosts cannot replay each other's answers (set "
            "CINDERFLOW_IDEMPOTENCY_SECRET to one value everywhere)",
            settings.data_dir / SECRET_FILE,
        )
    return secret_file(settings.data_dir / SECRET_FILE, "idempotency secret")


async def secret_of(state: Any, settings: Settings) -> bytes:
    """The app's secret, loaded when a key is first used (an API nobody sends keys to needs
    no writable data directory); 503 if it cannot be had."""
    secret = getattr(state, "idempotency_secret", None)
    if secret is None:
        try:
            secret = await run_in_threadpool(load_secret, settings)
        except (OSError, ValueError) as error:
            log.error("cannot load the idempotency secret: %s", error)
            raise ServiceUnavailable(
                "Idempotency-Key cannot be honoured now (the service's secret is unavailable);"
                " send the request without it or retry later."
            ) from None
        state.idempotency_secret = secret
    return secret


class Guard:
    """Wraps one operation-starting POST of one request (api/routing.py)."""

    def __init__(
        self, db: Database, request: Request, project_id: str, settings: Settings, secret: bytes
    ) -> None:
        self.db = db
        self.request = request
        self.project_id = project_id
        self.retention = settings.idempotency_key_retention
        longest = max(settings.attachment_timeout, settings.reset_wait_timeout)
        self.wait_for_first = max(WAIT_FOR_FIRST_S, longest + 15.0)
        """A repeat waits as long as the first request may take (an attach waits for its
        backend up to attachment_timeout), and a little more."""
        self.lost_after = max(LOST_ANSWER_S, 2 * self.wait_for_first)
        key = request.headers[HEADER]
        if not KEY_FORMAT.match(key):
            raise BadRequest(
                "Invalid Idempotency-Key: 1 to 255 printable ASCII characters without spaces."
            )
        self.key_hash = hashlib.sha256(key.encode()).hexdigest()
        self.sealing_key = _sealing_key(secret, project_id, key)
        self.claim_id: str | None = None

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
            self.claim_id = pending.claim_id
            token = CLAIM.set(pending)
            try:
                response = await handler()
            except KeyTaken:
                # a parallel request under the key committed first: its answer is ours (or,
                # if it freed the key meanwhile, this request runs again)
                replay = await self._replay(fingerprint)
                continue
            except Exception as error:
                if not pending.claimed:
                    # Refused before any change. But a parallel request under the key may
                    # have changed what this one checked (its extend made the size, its
                    # attachment reserved the volume): then its answer is this one's too.
                    replay = await self._replay(fingerprint)
                    if replay is not None:
                        return replay
                    raise
                # failed after its change was claimed (a 503 once the attachment is made):
                # the retry must get this answer, not make a second one
                response = await self._fault_of(error)
                if response is None:
                    await self._keep(_naming(GENERIC_FAULT, pending.resource_id))
                    raise
            finally:
                CLAIM.reset(token)
            if pending.claimed:  # a no-op if the claim's transaction rolled back after all
                if response.status_code >= 500 and pending.resource_id:
                    response = _naming(response, pending.resource_id)
                await self._keep(response)
            elif response.status_code >= 400:
                replay = await self._replay(fingerprint)  # as above, for a returned refusal
                if replay is not None:
                    return replay
            return response
        raise Conflict("Requests with this Idempotency-Key keep failing; use a new key.")

    async def _replay(self, fingerprint: str) -> Response | None:
        """The first response under the key, waited for while the first request still
        answers (None: the key is free); 409 for another request, or for a first one still
        answering after `wait_for_first`."""
        deadline = time.monotonic() + self.wait_for_first
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
                body = _open(self.sealing_key, row.response)
                if body is None:
                    raise Conflict(
                        "The first request with this Idempotency-Key was answered by an API "
                        "process with another idempotency_secret; it cannot be replayed here."
                    )
                return Response(
                    body,
                    status_code=row.status_code,
                    media_type=row.content_type,
                    headers={REPLAYED: "true"},
                )
            if as_utc(row.created_at) < utcnow() - timedelta(seconds=self.lost_after):
                what = f" (it changed {row.resource_id})" if row.resource_id else ""
                raise Conflict(
                    "The first request with this Idempotency-Key was accepted, but its answer "
                    f"was lost with the API process that gave it{what}; show that resource, "
                    "or list /operations, instead of repeating the request."
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
            if row is None or as_utc(row.created_at) < expired:
                return None
            return row

    async def _keep(self, response: Response) -> None:
        """Store the answer for repeats; a failure to is logged, not the client's (the
        change is made: its answer goes out; a repeat is then told the answer was lost)."""
        try:
            await run_in_threadpool(self._store, response)
        except Exception:
            log.warning("could not keep the answer under an Idempotency-Key", exc_info=True)

    def _store(self, response: Response) -> None:
        with self.db.transaction() as session:
            session.exec(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.project_id == self.project_id,
                    IdempotencyKey.key == self.key_hash,
                    IdempotencyKey.claim_id == self.claim_id,
                    IdempotencyKey.status_code.is_(None),
                )
                .values(
                    status_code=response.status_code,
                    response=_seal(self.sealing_key, bytes(response.body)),
                    content_type=response.media_type or response.headers.get("content-type"),
                )
            )

    async def _fault_of(self, error: Exception) -> Response | None:
        """The response the app's exception handlers make of `error` (None: unexpected)."""
        handlers = getattr(self.request.app, "exception_handlers", {})
        for kind in type(error).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                return await handler(self.request, error)
        return None


GENERIC_FAULT = JSONResponse(fault_body(500, GENERIC_500), status_code=500)


def _naming(fault: Response, resource_id: str | None) -> Response:
    """A server-side fault after the change, naming what the change made: its repeats are
    this answer, so they must say where to look (the attachment made, then 503)."""
    if not resource_id:
        return fault
    try:
        body = json.loads(bytes(fault.body))
        ((kind, inner),) = body.items()
        inner["message"] = f"{inner['message']} (The request made or changed {resource_id}.)"
    except (ValueError, TypeError, AttributeError, KeyError):
        return fault
    return JSONResponse(
        {kind: inner},
        status_code=fault.status_code,
        headers=dict(
            (k, v)
            for k, v in fault.headers.items()
            if k.lower() not in ("content-length", "content-type")
        ),
    )
