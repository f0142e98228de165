"""Cinder fault bodies: `{"<faultName>": {"code": N, "message": "..."}}` with Cinder's names."""

from __future__ import annotations

from typing import Any

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}

GENERIC_500 = "The server has either erred or is incapable of performing the requested operation."


def fault_name(code: int) -> str:
    return FAULT_NAMES.get(code, "computeFault")


def fault_body(code: int, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {fault_name(code): {"code": code, "message": message, **(extra or {})}}


class ApiError(Exception):
    """An error the client should see, rendered as a Cinder fault."""

    code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return fault_body(self.code, self.message)


class BadRequest(ApiError):
    code = 400


class Unauthorized(ApiError):
    code = 401


class Forbidden(ApiError):
    code = 403


class NotFound(ApiError):
    code = 404


class Conflict(ApiError):
    code = 409


class ServiceUnavailable(ApiError):
    code = 503


class RequestTooLarge(ApiError):
    code = 413


class UnsupportedMediaType(ApiError):
    code = 415


class OverLimit(ApiError):
    """Quota errors: Cinder prefixes the exception class name and sets `Retry-After: 0`."""

    code = 413

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(f"{kind}: {message}" if kind else message, headers={"Retry-After": "0"})

    def body(self) -> dict[str, Any]:
        return fault_body(self.code, self.message, {"retryAfter": "0"})


def invalid_input(reason: str) -> BadRequest:
    return BadRequest(f"Invalid input received: {reason}")


def invalid_volume(reason: str) -> BadRequest:
    return BadRequest(f"Invalid volume: {reason}")


def volume_not_found(volume_id: str) -> NotFound:
    return NotFound(f"Volume {volume_id} could not be found.")


def volume_type_not_found(ref: str) -> NotFound:
    return NotFound(f"Volume type with name {ref} could not be found.")


NOT_FOUND = "The resource could not be found."
