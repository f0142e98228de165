"""Requests the HTTP parser cannot read (bad framing, an invalid request line or header) are
answered by uvicorn before any ASGI app sees them, in plain text; cinderflow's protocol class
answers them as a Cinder fault, the body every client of this API expects."""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cinderflow.api.errors import fault_body


class CinderH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        """uvicorn's own (status, `connection: close`, then close), with a JSON fault; if
        a response has already begun on this connection, only close it."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.close()
            return
        body = json.dumps(fault_body(400, f"Malformed request: {msg}")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
