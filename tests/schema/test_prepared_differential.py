"""The stored-document path gives the generic executor's answers, byte for byte.

Every document of the shipped manifest, the dashboards of the tests and the bench, and
documents generated over the schema (hypothesis-graphql, seeded and bounded) run through
Strawberry's `Schema.execute` (parse, validate, execute) and through `execute_prepared`
(a document parsed and validated once) with the same caller and data; the answers,
errors and their paths and masking included, are compared as the bytes sent. The
response cache is retired between the two runs so both compute; the cache's own
behaviour is compared over HTTP (a document's answer is the same entry by text or id).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest
from graphql import (
    ArgumentNode,
    DocumentNode,
    IntValueNode,
    ListValueNode,
    StringValueNode,
    Visitor,
    print_ast,
    visit,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes, queries
from strawberry.http import process_result

from bench.w1_load import DOCUMENT as BENCH_DASHBOARD
from cli_documents import MANIFEST
from infra import response_cache
from models import Account
from schema import schema as dev_schema
from schema.context import Context
from schema.prepared import execute_prepared, prepare
from services.actors import Actor, authenticate
from services.trusted_documents import document_hash
from tests.support.api import Api
from tests.support.factories import line, order, partner, tenant
from tests.support.statements import DASHBOARD
from tests.support.trusted import post, store
from web.graphql import HTTP_OPERATIONS

# Root fields generated over: every query but voucherByCode, whose every call counts
# against the guessing limit (two runs would not see the same limiter state).
GENERATED_ROOTS = ["node", "nodes", "viewer", "products", "voucherQuote", "voucherOrders", "certificateRequests"]
GENERATED = 120
ATTEMPTS = 6
UNAWAITED_SIBLINGS = "ignore:Exception ignored in. <coroutine object:pytest.PytestUnraisableExceptionWarning"
SCALARS = {
    "DateTime": st.sampled_from(["2026-01-01T00:00:00+00:00", "not a date"]).map(nodes.String),
    "Decimal": st.sampled_from(["125.00", "1e3", "-1"]).map(nodes.String),
    "JSON": st.just(nodes.String("{}")),
}


class Realistic(Visitor):
    """Page sizes within the cap and ids of rows that exist, so most documents validate and reach data."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.ids = ids

    def enter_argument(self, node: ArgumentNode, *_: Any) -> ArgumentNode | None:
        value, name = node.value, node.name.value
        if name in ("first", "last") and isinstance(value, IntValueNode):
            return ArgumentNode(name=node.name, value=IntValueNode(value=str(abs(int(value.value)) % 60)))
        if name == "id" and isinstance(value, StringValueNode):
            return ArgumentNode(name=node.name, value=StringValueNode(value=self._pick(value.value)))
        if name == "ids" and isinstance(value, ListValueNode):
            picked = [StringValueNode(value=self._pick(getattr(v, "value", ""))) for v in value.values]
            return ArgumentNode(name=node.name, value=ListValueNode(values=tuple(picked)))
        return None

    def _pick(self, seed: str) -> str:
        return self.ids[len(seed) % len(self.ids)]


def generated_documents(ids: list[str]) -> list[str]:
    """A seeded, bounded sample of queries over the schema (drawn first, run afterwards: the runs are async)."""
    drawn: list[str] = []

    def realistic(document: DocumentNode) -> str:
        return print_ast(visit(document, Realistic(ids)))

    strategy = queries(
        dev_schema._schema,  # noqa: SLF001  # the graphql-core schema hypothesis-graphql reads
        fields=GENERATED_ROOTS,
        custom_scalars=SCALARS,
        allow_x00=False,
        print_ast=realistic,
    )

    @settings(
        max_examples=GENERATED,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(document: str) -> None:
        drawn.append(document)

    draw()
    return list(dict.fromkeys(drawn))


def manifest_queries() -> list[str]:
    texts = json.loads(MANIFEST.read_text(encoding="utf-8")).values()
    # Mutations change what the second run sees; they are compared over HTTP below, one run each path.
    return [t for t in texts if t.lstrip().startswith("query") and "voucherByCode" not in t]


async def both_paths(app: Any, actor: Actor | None, text: str, variables: dict[str, Any]) -> tuple[bytes, bytes, bool]:
    resources = app.state.resources
    request_id = uuid.uuid4().hex[:16]

    def context() -> Context:
        # The same caller and request id, fresh DataLoaders: what two requests of one client see.
        return Context(resources=resources, actor=actor, client="127.0.0.9", request_id=request_id)

    async def retire_cached_answers() -> None:
        if actor is not None and actor.account_id is not None:
            await response_cache.invalidate(resources.redis, resources.settings.queue_name, [actor.account_id])

    await retire_cached_answers()
    generic = await dev_schema.execute(
        text, variable_values=variables, context_value=context(), allowed_operation_types=HTTP_OPERATIONS
    )
    prepared = prepare(dev_schema, document_hash(text), text)
    await retire_cached_answers()
    if prepared is None:  # it did not validate: both paths are the generic one
        again = await dev_schema.execute(
            text, variable_values=variables, context_value=context(), allowed_operation_types=HTTP_OPERATIONS
        )
    else:
        again = await execute_prepared(
            dev_schema,
            prepared,
            variable_values=variables,
            context_value=context(),
            operation_name=None,
            allowed_operation_types=HTTP_OPERATIONS,
        )
    return orjson.dumps(process_result(generic)), orjson.dumps(process_result(again)), prepared is not None


async def assert_same(
    app: Any, actor: Actor | None, text: str, variables: dict[str, Any] | None = None
) -> tuple[bytes, bool]:
    """The answer (both paths agree on it), and whether the document took the prepared path.

    Two things vary between runs of one path: signed download links carry their expiry
    in seconds, and when a non-null field fails, graphql-core answers at once while its
    concurrent siblings may or may not have added their errors yet. So a document whose
    paths differ is run again (both paths, fresh): they must agree at some attempt.
    """
    for _ in range(ATTEMPTS):
        generic, prepared, was_prepared = await both_paths(app, actor, text, variables or {})
        if generic == prepared:
            break
    assert prepared == generic, (
        f"the paths differ for:\n{text}\ngeneric:  {generic[:400]!r}\nprepared: {prepared[:400]!r}"
    )
    return generic, was_prepared


@pytest.fixture
async def data(api: Api) -> dict[str, Any]:
    """A partner with two orders (one cancelled), a plain tenant; their actors."""
    p = await partner(api)
    first = await order(api, p["token"], line("BASIC_OV", 3), paymentMethod="ACCOUNT_BALANCE", customerName="Ada")
    second = await order(api, p["token"], line("SECURE_SITE_EV", 2, years=2), paymentMethod="ACCOUNT_BALANCE")
    cancel = (
        """mutation C($input: VoucherOrderCancelInput!) { voucherOrderCancel(input: $input) { errors { code } } }"""
    )
    await api(cancel, {"input": {"orderId": first["order"]["id"]}}, token=p["token"])
    other = await tenant(api)
    ids = [first["order"]["id"], second["order"]["id"], "VoucherOrder:1", "bm90IGFuIGlk"]
    return {
        "ids": ids,
        "partner": await authenticate(p["token"]),
        "tenant": await authenticate(other["token"]),
        "order_id": first["order"]["id"],
        "tokens": (p["token"], other["token"]),
    }


class TestSameAnswers:
    async def test_the_projects_documents_and_the_dashboards(self, app: Any, data: dict[str, Any]) -> None:
        documents: list[tuple[str, dict[str, Any]]] = [(text, {}) for text in manifest_queries()]
        documents += [(DASHBOARD, {"orders": 5, "vouchers": 3}), (BENCH_DASHBOARD, {"orders": 20, "vouchers": 50})]
        documents += [(DASHBOARD, {"orders": 500, "vouchers": 3})]  # over the page cap: a field error with a path
        for text, variables in documents:
            for actor in (data["partner"], data["tenant"], None):
                assert (await assert_same(app, actor, text, variables))[1], text

    # graphql-core leaves sibling fields' coroutines unawaited when a non-null root field fails (either path).
    @pytest.mark.filterwarnings(UNAWAITED_SIBLINGS)
    async def test_generated_documents(self, app: Any, data: dict[str, Any]) -> None:
        documents = generated_documents(data["ids"])
        assert len(documents) >= GENERATED // 2
        answers, prepared = set(), 0
        for text in documents:
            for actor in (data["partner"], None):
                answer, was_prepared = await assert_same(app, actor, text)
                answers.add(answer)
                prepared += was_prepared
        # Most documents validate (so the prepared path ran) and reach different data and errors.
        assert prepared > len(documents), (prepared, len(documents))
        assert len(answers) > len(documents) // 2

    async def test_errors_masking_and_limits(self, app: Any, data: dict[str, Any]) -> None:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("query Q($id: ID!) { node(id: $id) { id } }", {"id": "not a global id"}),
            ("query Q($id: ID!) { node(id: $id) { id } }", {}),  # a variable missing
            ("query Q($n: Int) { voucherOrders(first: $n) { totalCount } }", {"n": 10**6}),
            ("query A { products { code } } query B { viewer { user { email } } }", {}),  # which one?
            ("query { failedJobs { id } }", {}),  # staff only
        ]
        for text, variables in cases:
            for actor in (data["partner"], None):
                await assert_same(app, actor, text, variables)


class TestOverHttp:
    async def test_mutations_by_id_answer_as_by_text(self, api: Api, data: dict[str, Any]) -> None:
        quote = "query Quote($input: VoucherQuoteInput!) { voucherQuote(input: $input) { total { amount } } }"
        sign_out = f"mutation SignOutDiff{uuid.uuid4().hex[:6]} {{ signOut {{ signedOut }} }}"
        await store(quote, sign_out)
        variables = {"input": {"lines": [line()]}}
        by_text = await post(api, {"query": quote, "variables": variables})
        by_id = await post(api, {"documentId": document_hash(quote), "variables": variables})
        assert by_text.content == by_id.content
        tenant_token = data["tokens"][1]
        first = await post(api, {"documentId": document_hash(sign_out)}, tenant_token)
        second = await post(api, {"query": sign_out}, tenant_token)  # the session is gone now: the same refusal
        assert first.json() == {"data": {"signOut": {"signedOut": True}}}
        assert second.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_the_response_cache_holds_one_answer_for_a_document_by_text_or_id(
        self, api: Api, data: dict[str, Any]
    ) -> None:
        text = "query CachedName { viewer { account { name } } }"
        await store(text)
        # The plain tenant: no order of its own, so no PDF render announces a change (a version bump) meanwhile.
        tenant_token = data["tokens"][1]
        by_text = await post(api, {"query": text}, tenant_token)
        # Changed behind the cache's back (no version bump): whoever answers from the cache shows the old name.
        await Account.filter(id=data["tenant"].account_id).update(name="Renamed Behind The Cache")
        by_id = await post(api, {"documentId": document_hash(text)}, tenant_token)
        assert by_id.content == by_text.content
        assert "Renamed" not in by_id.text
