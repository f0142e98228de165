"""`/extensions`: the API extensions this service has (`cinder list-extensions`), Cinder's
shape; cinderflow's own operations resource is one of them."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from cinderflow.api.routing import ApiRequest, Router

router = Router()
UPDATED = "2026-12-02T00:00:00+00:00"
EXTENSIONS = (
    (
        "OSCinderflowOperations",
        "os-cinderflow-operations",
        "Operations: what runs on a volume, "
        "how far it is and how it ended (/operations, ?wait=N, cancel).",
    ),
    ("AdminActions", "os-admin-actions", "Enable admin actions."),
    ("ExtendedServices", "os-extended-services", "Extended services support."),
    ("Hosts", "os-hosts", "Admin-only host administration."),
    ("QuotaSets", "os-quota-sets", "Quota management support."),
    ("SchedulerStats", "scheduler-stats", "Scheduler stats support."),
    ("Services", "os-services", "Services support."),
    ("TypesExtraSpecs", "os-types-extra-specs", "Type extra specs support."),
    ("TypesManage", "os-types-manage", "Types manage support."),
    ("VolumeActions", "os-volume-actions", "Enable volume actions."),
    ("VolumeTransfer", "os-volume-transfer", "Volume transfer management support."),
    ("VolumeTypeEncryption", "encryption", "Encryption support for volume types."),
)


class Extension(BaseModel):
    name: str
    alias: str
    description: str
    updated: str
    links: list[dict[str, str]]
    namespace: str


class ExtensionList(BaseModel):
    extensions: list[Extension]


@router.route("GET", "/extensions", response=ExtensionList)
async def index(req: ApiRequest) -> Response:
    """The extensions this API has."""
    return JSONResponse(
        {
            "extensions": [
                {
                    "name": name,
                    "alias": alias,
                    "description": description,
                    "updated": UPDATED,
                    "links": [],
                    "namespace": f"https://docs.openstack.org/volume/ext/{alias}/api/v1",
                }
                for name, alias, description in EXTENSIONS
            ]
        }
    )
