"""The data converter: Pydantic JSON payloads, no codec, nothing that depends on where a
payload goes.

The SDK asks the converter for a copy bound to each payload's serialization context (workflow,
activity) before it converts it; a `DataConverter` whose failure converter accepts a context
is then rebuilt, payload converters included, for every command of every workflow task (a
fifth of a create's worker CPU here). None of our converters reads the context, so this one
stays itself, and all copies share one payload converter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Self

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, SerializationContext
from temporalio.exceptions import ApplicationError


class SharedPayloadConverter(PydanticPayloadConverter):
    """One instance for the process: the SDK copies its data converter for every workflow
    task's payloads, and each copy constructs its payload converter anew. Ours is stateless
    (JSON through Pydantic), so every copy can share it."""

    _shared: SharedPayloadConverter | None = None
    inputs: frozenset[type] = frozenset()
    """Workflow input models (set by the worker wiring): a payload that cannot be decoded
    into one is a non-retryable ApplicationError, which fails that workflow once with the
    converter's words. Anything else undecodable (an activity's result) stays a workflow-task
    failure, retried until a fixed or upgraded worker can read it."""

    def __new__(cls) -> SharedPayloadConverter:
        if cls._shared is None:
            cls._shared = super().__new__(cls)
            PydanticPayloadConverter.__init__(cls._shared)
        return cls._shared

    def __init__(self) -> None:
        """Built once, in __new__."""

    def with_context(self, context: SerializationContext) -> Self:
        """Never a context-bound copy (the SDK would rebuild and re-point the shared one)."""
        return self

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        try:
            return super().from_payloads(payloads, type_hints)
        except Exception as error:
            if type_hints and self.inputs.intersection(type_hints):
                raise ApplicationError(
                    f"the operation's input cannot be decoded: {error}",
                    type="UndecodableInput",
                    non_retryable=True,
                ) from error
            raise


@dataclasses.dataclass(frozen=True)
class ContextFreeDataConverter(DataConverter):
    def with_context(self, context: SerializationContext) -> Self:
        return self


DATA_CONVERTER = ContextFreeDataConverter(payload_converter_class=SharedPayloadConverter)
