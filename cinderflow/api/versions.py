"""Version documents: `GET /` (300 Multiple Choices), `GET /v3` and `GET /v3/` (200), no auth.

cinderclient needs `version` and `min_version`; keystoneauth (SDK, OSC) needs `id`, `status` and
the `self` link, and reads `version` as the maximum microversion.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from cinderflow.api.microversions import MAX_VERSION, MIN_VERSION, UPDATED


def document(base_url: str) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": "v3.0",
                "status": "CURRENT",
                "version": str(MAX_VERSION),
                "min_version": str(MIN_VERSION),
                "updated": UPDATED,
                "links": [
                    {
                        "rel": "describedby",
                        "type": "text/html",
                        "href": "https://docs.openstack.org/",
                    },
                    {"rel": "self", "href": f"{base_url}/v3/"},
                ],
                "media-types": [
                    {
                        "base": "application/json",
                        "type": "application/vnd.openstack.volume+json;version=3",
                    }
                ],
            }
        ]
    }


def _base_url(request: Request) -> str:
    configured = request.app.state.services.settings.public_endpoint
    return (configured or str(request.base_url)).rstrip("/")


async def root(request: Request) -> JSONResponse:
    return JSONResponse(document(_base_url(request)), status_code=300)


async def v3(request: Request) -> JSONResponse:
    return JSONResponse(document(_base_url(request)))
