"""Custom search attributes set on every volume workflow, so a stuck one is one query away:
`temporal workflow list --query "VolumeId='<id>' AND ExecutionStatus='Running'"`."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

log = logging.getLogger(__name__)

VOLUME_ID = SearchAttributeKey.for_keyword("VolumeId")
PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
OPERATION = SearchAttributeKey.for_keyword("Operation")

ALL = (VOLUME_ID, PROJECT_ID, OPERATION)


def for_operation(
    operation: str, volume_id: str | None, project_id: str | None
) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(OPERATION, operation)]
    if volume_id:
        pairs.append(SearchAttributePair(VOLUME_ID, volume_id))
    if project_id:
        pairs.append(SearchAttributePair(PROJECT_ID, project_id))
    return TypedSearchAttributes(pairs)


def dev_server_flags() -> list[str]:
    """`--search-attribute NAME=Keyword` for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


async def ensure_registered(client: Client) -> None:
    """Register our attributes in the client's namespace if they are missing.

    The dev server gets them as flags; a real cluster needs them registered once, or every
    workflow start is rejected. Where the operator API is not allowed (Temporal Cloud), this
    logs how to register them instead of failing the worker.
    """
    namespace = client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
            for key in ALL
            if key.name not in listed.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
            )
            log.info("registered search attributes %s in namespace %s", sorted(missing), namespace)
    except Exception:
        log.error(
            "cannot register search attributes %s in namespace %s; workflow starts will fail "
            "until an operator runs: temporal operator search-attribute create --namespace %s %s",
            [k.name for k in ALL],
            namespace,
            namespace,
            " ".join(f"--name {k.name} --type Keyword" for k in ALL),
            exc_info=True,
        )
