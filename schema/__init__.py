"""The GraphQL schema, assembled from per-domain modules."""

from __future__ import annotations

import logging
from collections.abc import Callable

import strawberry
from graphql import ASTValidationRule, GraphQLError, NoSchemaIntrospectionCustomRule, specified_rules
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema import arguments
from schema.accounts import AccountMutation, AccountQuery
from schema.after_commit import AfterCommitWrites
from schema.cache import ResponseCache
from schema.catalogue import CatalogueQuery
from schema.common import DECIMAL_SCALAR, DecimalString
from schema.execution import GraphQLExecutionContext, name_enums_by_lookup
from schema.finance.mutations import FinanceMutation
from schema.limits import PageSizeLimit
from schema.live import LiveSubscription
from schema.nodes import NodeQuery
from schema.observe import ObservedMaskErrors
from schema.orders.mutations import OrderMutation
from schema.orders.queries import OrderQuery
from schema.pagination import MAX_PAGE_SIZE
from schema.prepared import Preparation, PreparedCache
from schema.redemption import RedemptionMutation, RedemptionQuery
from schema.requests import HideSuggestions, OneOperationOrItsName
from schema.resilience import answer_outages_in_payloads
from schema.runner import ExtensionsRunner
from schema.staff import JobMutation, StaffMutation, StaffQuery
from schema.webhooks import WebhookMutation
from services import codes

log = logging.getLogger("vouchsafe.graphql")

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 2_000


# One query and one mutation type per domain module, merged into the root types.
QUERIES = (AccountQuery, CatalogueQuery, OrderQuery, RedemptionQuery, StaffQuery)
MUTATIONS = (
    AccountMutation,
    FinanceMutation,
    OrderMutation,
    RedemptionMutation,
    StaffMutation,
    JobMutation,
    WebhookMutation,
)


class Schema(strawberry.Schema):
    # Set by build_schema: how trusted documents are prepared (schema.prepared), and the prepared ones.
    preparation: Preparation
    prepared: PreparedCache

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> ExtensionsRunner:
        return ExtensionsRunner(execution_context=execution_context, extensions=extensions)  # hooks inspected once

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Unexpected errors are logged with their trace by MaskInternalErrors; the rest
        # (validation, authentication, page sizes) are the client's, not ours.
        for error in errors:
            log.debug("graphql error: %s", codes.redact(error.message))


def build_schema(*, production: bool = False) -> Schema:
    """The schema; production also refuses introspection and hides field suggestions."""
    # Parsing and validating (with their caches); a prepared document has had both (schema.prepared).
    parsing: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        ParserCache,
        ValidationCache,
    ]
    executing: list[Callable[[], SchemaExtension]] = [
        OneOperationOrItsName,  # after ValidationCache, which sets the validation errors
        ObservedMaskErrors,  # internal errors masked; every operation counted and timed
        # After the limits and validation: a stored answer is only ever given to a valid request.
        AfterCommitWrites,  # encloses the cache's own write after a mutation
        ResponseCache,
    ]
    # Limits are checked on the parsed document before any resolver runs. The depth and
    # alias rules are made once, here: QueryDepthLimiter and MaxAliasesLimiter make new rule
    # classes per request, and the ValidationCache (keyed on the rules) then never hit.
    rules: list[type[ASTValidationRule]] = [
        depth_rule(MAX_DEPTH, None),
        aliases_rule(MAX_ALIASES),
        PageSizeLimit,
    ]
    if production:
        rules.append(NoSchemaIntrospectionCustomRule)
        executing.append(HideSuggestions)
    extensions = [*parsing, *executing, lambda: AddValidationRules(rules)]
    built = Schema(
        query=merge_types("Query", (NodeQuery, *QUERIES)),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=LiveSubscription,
        extensions=extensions,
        execution_context_class=GraphQLExecutionContext,
        config=StrawberryConfig(
            relay_max_results=MAX_PAGE_SIZE,
            disable_field_suggestions=production,
            scalar_map={DecimalString: DECIMAL_SCALAR},
        ),
    )
    name_enums_by_lookup(built._schema)  # noqa: SLF001  # Strawberry's graphql-core schema (tests/test_library_patches.py)
    # AddValidationRules appends the rules to graphql-core's specified ones, as here.
    built.preparation = Preparation(MAX_TOKENS, (*specified_rules, *rules), tuple(executing))
    built.prepared = PreparedCache()
    answer_outages_in_payloads(built._schema)  # noqa: SLF001  # as above: mutations' resolvers are wrapped there
    arguments.install()  # resolvers' arguments converted by converters made once (tests/test_library_patches.py)
    return built


schema = build_schema()
