"""The one place where domain errors become `UserError`s, and internal errors are masked."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.relay.types import GlobalIDValueError

from infra.faults import RETRY_AFTER_SECONDS, describe, is_unavailable
from services.errors import DomainError, InvalidFields
from services.errors import ErrorCode as DomainErrorCode

log = logging.getLogger("vouchsafe.graphql")

strawberry.enum(DomainErrorCode, name="ErrorCode", description="Why a mutation did not do what was asked.")


@strawberry.type(description="An expected failure: bad input, a refused rule. Nothing was changed.")
class UserError:
    code: DomainErrorCode
    field: list[str] | None
    message: str
    retry_after_seconds: int | None = strawberry.field(
        default=None, description="RATE_LIMITED, SERVICE_UNAVAILABLE: the seconds to wait before trying again."
    )


def _camel(name: str) -> str:
    head, *tail = name.split("_")
    return head + "".join(part.title() for part in tail)


def user_errors(error: DomainError) -> list[UserError]:
    """A domain error as the payload's errors (one per field when several are invalid); paths start at `input`."""
    if isinstance(error, InvalidFields):
        return [user_error for each in error.errors for user_error in user_errors(each)]
    # Services name fields in snake_case, nested ones dotted ("lines.1.validity_years").
    parts = [piece for part in error.field or () for piece in part.split(".")]
    field = ["input", *(_camel(part) for part in parts)] if parts else None
    return [
        UserError(code=error.code, field=field, message=error.message, retry_after_seconds=error.retry_after_seconds)
    ]


class ClientError(Exception):
    """A request the API refuses as a whole (bad page size, not signed in); shown to the client."""

    def __init__(self, message: str, code: str = "BAD_REQUEST", **extensions: object) -> None:
        super().__init__(message)
        self.extensions: dict[str, object] = {"code": code, **extensions}


def rate_limited(error: DomainError) -> ClientError:
    """RATE_LIMITED as a GraphQL error, with the seconds to wait as a number for clients to act on."""
    return ClientError(error.message, code="RATE_LIMITED", retryAfterSeconds=error.retry_after_seconds)


UNAVAILABLE_MESSAGE = (
    "The service is briefly unavailable (a database or cache did not answer in time). "
    "Try again in a few seconds; a write retried with the same idempotency key runs at most once."
)


def service_unavailable(error: DomainError) -> ClientError:
    """SERVICE_UNAVAILABLE as a GraphQL error, with the seconds to wait (as RATE_LIMITED)."""
    return ClientError(error.message, code="SERVICE_UNAVAILABLE", retryAfterSeconds=error.retry_after_seconds)


def unavailable_user_error() -> UserError:
    """A mutation's payload error when a dependency failed under it (schema.resilience)."""
    return UserError(
        code=DomainErrorCode.SERVICE_UNAVAILABLE,
        field=None,
        message=UNAVAILABLE_MESSAGE,
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


def _exposed(error: GraphQLError) -> bool:
    original = error.original_error
    # Parse and validation errors have no original error: they describe the document. A
    # GraphQLError inside is graphql-core's own account of a client's mistake (a variable
    # missing, mistyped or out of range, an input the scalar refused), worded for the client.
    return original is None or isinstance(original, ClientError | GlobalIDValueError | GraphQLError)


class MaskInternalErrors(MaskErrors):
    """Unexpected errors reach the client as a generic message with a request id; the log has it all."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not _exposed(error))

    def _process_result(self, result: object) -> None:
        # Strawberry's test (a result with errors) without its runtime Protocol check, ~15 us an operation.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        context = self.execution_context.context
        request_id = getattr(context, "request_id", "-")
        original = error.original_error
        if original is not None and is_unavailable(original):
            # Not a bug of ours: a dependency down or slow. Retryable, and said so (docs/resilience.md).
            log.warning("%s unavailable in %s (request %s)", describe(original), _path(error), request_id)
            return GraphQLError(
                message=UNAVAILABLE_MESSAGE,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={
                    "code": "SERVICE_UNAVAILABLE",
                    "retryAfterSeconds": RETRY_AFTER_SECONDS,
                    "requestId": request_id,
                },
            )
        log.error(
            "unexpected error in %s (request %s)",
            _path(error),
            request_id,
            exc_info=(type(original), original, original.__traceback__) if original else None,
        )
        return GraphQLError(
            message=f"Unexpected error. Request id: {request_id}",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


def _path(error: GraphQLError) -> str:
    return ".".join(str(p) for p in error.path or [])
