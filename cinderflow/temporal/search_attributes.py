"""Custom search attributes set on every volume workflow, so a stuck one is one query away:
`temporal workflow list --query "VolumeId='<id>' AND ExecutionStatus='Running'"`."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

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
