"""Every place vouchsafe overrides or leans on a library's internals, and the upstream code it was checked against.

Each patch lives in one module of ours, whose docstring says why and when to drop it. This table
records the upstream code each one replaces or relies on, as it was when the patch was checked.
When a library release changes that code, the test fails: read the new upstream code, decide
whether the patch still holds (or can go), then update the fingerprint here. pyproject.toml
bounds these libraries above for the same reason.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet


@dataclass(frozen=True)
class Patch:
    ours: str  # where the patch lives
    upstream: str  # "module:qualified.name" of the code it replaces or relies on
    fingerprint: str  # sha256 (first 16 hex digits) of that code's source when checked
    distribution: str
    checked: str  # the versions it was checked with; pyproject.toml's bounds say the same
    drop_when: str


PATCHES = (
    Patch(
        "schema/planned.py: PlannedExecutor overrides it: the same loop with the plan's steps inlined",
        "graphql.execution.executor:Executor.execute_fields",
        "797f54fbd779b4e3",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor mirrors its error handling from the resolver's result on",
        "graphql.execution.executor:Executor.execute_field",
        "5281dc836ecc24a0",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor overrides it: collected once per document, not per request",
        "graphql.execution.executor:Executor.collect_subfields",
        "53924d281ad7f699",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor overrides it: the root collection kept per document",
        "graphql.execution.executor:Executor.execute_collected_root_fields",
        "57c17a23ae28ac86",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor mirrors it for lists of objects",
        "graphql.execution.executor:Executor.complete_iterable_value",
        "bdb49d2d91f1e312",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor mirrors its error handling for list items",
        "graphql.execution.executor:Executor.complete_list_item_value",
        "8883b4d65a1ae099",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: PlannedExecutor mirrors its is_type_of check",
        "graphql.execution.executor:Executor.complete_object_value",
        "55e77f58eca1ddc4",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/planned.py: Step reads a basic field (`_is_default`, no resolver) with getattr",
        "strawberry.schema.schema_converter:GraphQLCoreConverter.from_resolver",
        "bcac1354fecdee79",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "graphql-core plans a known document itself",
    ),
    Patch(
        "schema/arguments.py: convert_arguments and its converters take the same steps, decided once",
        "strawberry.types.arguments:convert_argument",
        "a11a22f213be34f4",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry plans its argument conversion itself",
    ),
    Patch(
        "schema/arguments.py: convert_arguments replaces it",
        "strawberry.types.arguments:convert_arguments",
        "c1f343b7611e0f78",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry plans its argument conversion itself",
    ),
    Patch(
        "schema/arguments.py: install relies on it calling `convert_arguments` by its module's name",
        "strawberry.schema.schema_converter:get_arguments",
        "622f5399b812e9e2",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry plans its argument conversion itself",
    ),
    Patch(
        "schema/arguments.py: compile_type asks it which types are leaves",
        "strawberry.types.arguments:_is_leaf_type",
        "fd08de1708c3e180",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry plans its argument conversion itself",
    ),
    Patch(
        "schema/arguments.py: compile_type asks it which lists hold leaves",
        "strawberry.types.arguments:_is_optional_leaf_type",
        "b78ccb14fc9fbde3",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry plans its argument conversion itself",
    ),
    Patch(
        "schema/runner.py: RememberedHooks.get_hook takes its steps, decided once per class",
        "strawberry.extensions.context:ExtensionContextManagerBase.get_hook",
        "2f0897ead1abdc4a",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry remembers each extension class's hooks",
    ),
    Patch(
        "schema/runner.py: _from_callable takes its steps",
        "strawberry.extensions.context:ExtensionContextManagerBase.from_callable",
        "9dab43ed5b9b79e6",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry remembers each extension class's hooks",
    ),
    Patch(
        "schema/runner.py: ExtensionsRunner overrides its stages",
        "strawberry.extensions.runner:SchemaExtensionsRunner",
        "32c30abf56616b97",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry remembers each extension class's hooks",
    ),
    Patch(
        "schema/errors.py: MaskInternalErrors._process_result overrides it without the Protocol check",
        "strawberry.extensions.mask_errors:MaskErrors._process_result",
        "c0674de60b912e68",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry checks a result's errors without a runtime Protocol",
    ),
    Patch(
        "schema/errors.py: MaskInternalErrors._process_result tests what this Protocol tests (an `errors` attribute)",
        "strawberry.extensions.mask_errors:_ResultWithErrors",
        "db0f74246a4de106",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry checks a result's errors without a runtime Protocol",
    ),
    Patch(
        "schema/execution.py: is_awaitable",
        "strawberry.execution:optimized_is_awaitable",
        "573992bc92ad1c50",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry's own check remembers its answer per type",
    ),
    Patch(
        "schema/execution.py: GraphQLExecutionContext.is_awaitable",
        "graphql.execution.executor:Executor.__init__",
        "9b630bd4461cc4ea",
        "graphql-core",
        ">=3.3,<3.4",
        "graphql-core stops reading `self.is_awaitable` (then the patch does nothing: remove it)",
    ),
    Patch(
        "schema/execution.py: name_enums_by_lookup",
        "strawberry.schema.schema_converter:CustomGraphQLEnumType",
        "484f3fad33ac869f",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry serializes an enum member by lookup instead of scanning its values",
    ),
    Patch(
        "schema/requests.py: OneOperationOrItsName reads _provided_operation_name",
        "strawberry.types.execution:ExecutionContext.operation_name",
        "551c5fdf4b5834b9",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry refuses several operations without operationName itself",
    ),
    Patch(
        "schema/prepared.py: execute_prepared (Schema.execute's steps, its private helpers)",
        "strawberry.schema.schema:Schema.execute",
        "a4b76c96d614f4d0",
        "strawberry-graphql",
        ">=0.327.2,<0.342",
        "Strawberry's execute takes an already parsed and validated document",
    ),
    Patch(
        "infra/database.py: PooledConnection.get_reset_query",
        "asyncpg.pool:PoolConnectionHolder.release",
        "a8af808680d4c5ce",
        "asyncpg",
        ">=0.29,<0.33",
        "asyncpg skips the reset round trip for clean sessions, or the app starts keeping session state",
    ),
    Patch(
        "infra/redis.py: CheckOutsideLockPool.get_connection",
        "redis.asyncio.connection:ConnectionPool.get_connection",
        "4876bc7de473dbc8",
        "redis",
        ">=5.3,<6",
        "redis-py checks the connection outside the pool's lock (its issue #3692)",
    ),
    Patch(
        "infra/sqlite_backend.py: BEGIN IMMEDIATE",
        "tortoise.backends.sqlite.client:SqliteTransactionWrapper.begin",
        "f2754f0a93e703cd",
        "tortoise-orm",
        ">=1.1,<1.2",
        "Tortoise lets a SQLite transaction begin IMMEDIATE",
    ),
    Patch(
        "infra/sqlite_backend.py: ImmediateSqliteClient._in_transaction",
        "tortoise.backends.sqlite.client:SqliteClient._in_transaction",
        "f40b90ec19d27e53",
        "tortoise-orm",
        ">=1.1,<1.2",
        "as above",
    ),
    Patch(
        "infra/pg_backend.py: _SafeTransactionContext.__aenter__",
        "tortoise.backends.base.client:TransactionContextPooled.__aenter__",
        "aab85fd1e6ac5f6d",
        "tortoise-orm",
        ">=1.1,<1.2",
        "Tortoise unbinds the task when BEGIN fails (test_pg_backend.py's check of Tortoise's context fails)",
    ),
    Patch(
        "infra/pg_backend.py: _SafeTransactionContext.__aexit__",
        "tortoise.backends.base.client:TransactionContextPooled.__aexit__",
        "887994b45c7c1fbf",
        "tortoise-orm",
        ">=1.1,<1.2",
        "Tortoise unbinds the task when the connection cannot go back (test_pg_backend.py's check fails)",
    ),
    Patch(
        "infra/pg_backend.py: _BoundedAcquire.__aenter__",
        "tortoise.backends.base.client:PoolConnectionWrapper.__aenter__",
        "02a09a1b884e1478",
        "tortoise-orm",
        ">=1.1,<1.2",
        "Tortoise bounds the wait for a pooled connection",
    ),
    Patch(
        "infra/redis.py: _Pipeline.reset",
        "redis.asyncio.client:Pipeline.reset",
        "810efb8bd7dbab1a",
        "redis",
        ">=5.3,<6",
        "redis-py gives the connection back when UNWATCH times out",
    ),
    Patch(
        "workers/worker.py: VouchsafeWorker.main",
        "arq.worker:Worker.main",
        "45ca1591c9717466",
        "arq",
        ">=0.26,<0.29",
        "arq's loop survives a Redis outage and no longer needs INFO",
    ),
    Patch(
        "workers/worker.py: VouchsafeWorker.start_jobs",
        "arq.worker:Worker.start_jobs",
        "b45797cfa40bed7f",
        "arq",
        ">=0.26,<0.29",
        "arq can leave CPU-bound jobs queued for other workers",
    ),
)


def resolve(dotted: str) -> Any:
    module_name, qualified = dotted.split(":")
    found: Any = importlib.import_module(module_name)
    for part in qualified.split("."):
        found = getattr(found, part)
    return found.fget if isinstance(found, property) else found


def fingerprint(code: Any) -> str:
    return hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16]


@pytest.mark.parametrize("patch", PATCHES, ids=lambda patch: patch.ours)
def test_the_upstream_code_a_patch_relies_on_is_the_code_it_was_checked_against(patch: Patch) -> None:
    assert version(patch.distribution) in SpecifierSet(patch.checked), (
        f"{patch.distribution} {version(patch.distribution)} is outside what {patch.ours} was checked with"
    )
    assert fingerprint(resolve(patch.upstream)) == patch.fingerprint, (
        f"{patch.upstream} changed upstream: re-check {patch.ours} (drop it when {patch.drop_when})"
    )


def test_pyproject_bounds_every_patched_library_above() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = {_name(requirement): requirement for requirement in project["project"]["dependencies"]}
    for distribution in {patch.distribution for patch in PATCHES}:
        assert "<" in declared.get(distribution, ""), f"{distribution} has no upper bound in pyproject.toml"


def _name(requirement: str) -> str:
    for stop in "[<>=!~ ;":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()


def test_the_fingerprint_moves_when_the_code_does() -> None:
    # The check can fail: another function's source gives another fingerprint.
    assert fingerprint(resolve("arq.worker:Worker.main")) != fingerprint(resolve("arq.worker:Worker.start_jobs"))
