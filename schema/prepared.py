"""Prepared documents: a trusted document parsed and validated once per process, then executed without either.

A library patch (tests/test_library_patches.py): `execute_prepared` takes Strawberry's
`Schema.execute` step by step through its private helpers; drop it when Strawberry's
execute accepts an already parsed and validated document.

Strawberry's ParserCache and ValidationCache already spare a repeated text its parse
and validation, but each request still pays their look-ups: hashing the text for the
parser's LRU, then hashing the whole parsed tree (graphql-core's nodes are frozen
dataclasses, hashed field by field, uncached) for the validator's. A stored document
is known by its sha256 before the request arrives, so it is parsed and validated
once, with exactly the rules and token limit of the generic path, and each request
goes straight to execution through the same extensions otherwise (masking, the
response cache, the one-operation rule, suggestions hidden): the same answers.
A document that does not parse or validate is not prepared; it takes the generic
path, which reports its errors as it always did.
"""

# ruff: noqa: SLF001  (Strawberry's private execution helpers: the patch above)
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, parse, print_ast
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import _coerce_error, validate_document
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from schema.planned import DocumentPlan, plannable, planned_execute

if TYPE_CHECKING:
    from graphql import ASTValidationRule

    from schema import Schema

_OPERATION_TYPES = {op.value: op for op in OperationType}


@dataclass(frozen=True)
class PreparedDocument:
    hash: str
    text: str
    document: DocumentNode
    # Operation name (None for an anonymous one) -> its type.
    operations: Mapping[str | None, OperationType]
    # Its fields collected and planned once (schema.planned); None: it takes the generic executor.
    plan: DocumentPlan | None = None

    def operation_type(self, operation_name: str | None) -> OperationType | None:
        """The type of the operation a request picks; None when the name picks none (the executor says why)."""
        if operation_name is None:
            return next(iter(self.operations.values())) if len(self.operations) == 1 else None
        return self.operations.get(operation_name)


@dataclass(frozen=True)
class Preparation:
    """What `prepare` needs of the schema: the parse options and rules the generic path applies."""

    max_tokens: int
    rules: tuple[type[ASTValidationRule], ...]
    # Every extension of the generic path except those that parse or validate (done once here).
    extensions: tuple[Callable[[], SchemaExtension], ...]


def parsed(schema: Schema, text: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
    """The document parsed and validated as the generic path would: the tree, or the errors it reports."""
    try:
        document = parse(text, max_tokens=schema.preparation.max_tokens)
    except GraphQLError as error:
        return None, [error]
    errors = validate_document(schema._schema, document, schema.preparation.rules)
    return (None, errors) if errors else (document, [])


def printed_form(text: str) -> str | None:
    """The document as graphql-core prints it, when that is another text; None when it is the same or unparsable.

    Clients that parse their documents and print them again before sending (Python's gql
    sends `print_ast` of its document) send this text, not the one their manifest holds.
    """
    try:
        printed = print_ast(parse(text))
    except GraphQLError:
        return None
    return None if printed == text else printed


def prepare(schema: Schema, digest: str, text: str) -> PreparedDocument | None:
    """The prepared document; None when parsing or validation reports errors (the generic path reports them)."""
    document, _ = parsed(schema, text)
    if document is None:
        return None
    operations: dict[str | None, OperationType] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else None
            operations[name] = _OPERATION_TYPES[definition.operation.value]
    return PreparedDocument(digest, text, document, operations, DocumentPlan() if plannable(document) else None)


class PreparedCache:
    """A bounded LRU of documents by hash: the prepared form, or None for one that must take the generic path."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[str, PreparedDocument | None]] = OrderedDict()

    def get(self, digest: str) -> tuple[str, PreparedDocument | None] | None:
        entry = self._entries.get(digest)
        if entry is not None:
            self._entries.move_to_end(digest)
        return entry

    def put(self, digest: str, text: str, prepared: PreparedDocument | None) -> None:
        self._entries[digest] = (text, prepared)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


async def execute_prepared(
    schema: Schema,
    prepared: PreparedDocument,
    *,
    variable_values: dict[str, Any] | None,
    context_value: Any,
    operation_name: str | None,
    allowed_operation_types: Iterable[OperationType],
    operation_extensions: dict[str, Any] | None = None,
) -> ExecutionResult:
    """Strawberry's `Schema.execute` (same steps, hooks and error handling) for a prepared document."""
    context = schema._create_execution_context(
        query=prepared.text,
        allowed_operation_types=allowed_operation_types,
        variable_values=variable_values,
        context_value=context_value,
        operation_name=operation_name,
        operation_extensions=operation_extensions,
    )
    context.graphql_document = prepared.document
    context.pre_execution_errors = []  # validated when prepared: Strawberry then skips validation
    extensions = [factory() for factory in schema.preparation.extensions]
    for extension in extensions:
        extension.execution_context = context
    runner = schema.create_extensions_runner(context, extensions)
    middleware = schema._get_middleware_manager(extensions)
    custom = schema._get_custom_context_kwargs(operation_extensions)
    try:
        async with runner.operation():
            if errors := await schema._prepare_operation_async(context, runner):
                return await schema._handle_execution_result(context, errors, runner)
            execute = schema._get_execute_function() if prepared.plan is None else planned_execute(prepared.plan)
            result = await schema._execute_operation(context, runner, middleware, execute, custom)
    except (CannotGetOperationTypeError, InvalidOperationTypeError):
        raise
    except Exception as exc:  # as Strawberry does: an extension's failure is the request's error
        return await schema._handle_execution_result(
            context, PreExecutionError(data=None, errors=[_coerce_error(exc)]), runner
        )
    return await schema._handle_execution_result(context, result, runner, skip_process_errors=True)
