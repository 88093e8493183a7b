"""Document limits, production hardening, error masking and batching, through HTTP as a client would."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql.language import Lexer, Source, TokenKind

import models
import schema
import services.accounts
from schema.pagination import MAX_PAGE_SIZE
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import PASSWORD, SIGN_IN, sign_in, sign_up, tenant, unique_email

VIEWER = "{ viewer { user { email } } }"
USERS_PAGE = "query Users($first: Int) { viewer { account { users(first: $first) { totalCount } } } }"
INTROSPECTION = "{ __schema { types { name } } }"
MISSPELLED = "{ viewr { user { id } } }"
SIGN_OUT_VIA_GET = "mutation{signOut{signedOut}}"


def sign_up_field(email: str, alias: str = "signUp", selection: str = "user { id }") -> str:
    """A signUp selection with its input inline, so the document alone creates the user."""
    fields = f'email: "{email}", password: "{PASSWORD}", accountName: "Acme", locale: "en"'
    return f"{alias}: signUp(input: {{{fields}}}) {{ {selection} }}"


def mutation_of_depth(email: str, depth: int) -> str:
    """A plain signUp next to one whose selection is `depth` levels deep (the limiter counts syntax)."""
    selection = "leaf"
    for name in reversed(["user", *(f"level{i}" for i in range(2, depth))]):
        selection = f"{name} {{ {selection} }}"
    return f"mutation {{ {sign_up_field(email)} {sign_up_field(unique_email('deep'), 'deep', selection)} }}"


def mutation_of_tokens(email: str, tokens: int) -> str:
    """A signUp padded with inline fragments (six tokens each) to `tokens` tokens at most, and not six fewer."""
    head = f"mutation {{ {sign_up_field(email)}"
    padding = " ... on Mutation { __typename }" * ((tokens - token_count(head) - 1) // 6)
    return f"{head}{padding} }}"


def token_count(document: str) -> int:
    lexer = Lexer(Source(document))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def mutation_with_hidden_aliases(email: str, aliases: int) -> str:
    """`aliases` aliases in all, only one of them visible in the operation: the rest sit in nested fragments."""
    padding = " ".join(f"t{i}: __typename" for i in range(aliases - 1))
    return f"""
mutation Hidden {{ ...Outer }}
fragment Outer on Mutation {{ {sign_up_field(email, "created")} ...Inner }}
fragment Inner on Mutation {{ {padding} }}"""


async def user_exists(email: str) -> bool:
    return await models.User.filter(email=email).exists()


def messages(result: dict[str, Any]) -> list[str]:
    return [error["message"] for error in result.get("errors") or []]


class TestDocumentLimits:
    async def test_too_deep_a_document_is_refused_before_any_resolver_runs(self, api: Api) -> None:
        # given
        email = unique_email("deep")
        limit_message = f"exceeds maximum operation depth of {schema.MAX_DEPTH}"
        # when
        result = await api(mutation_of_depth(email, schema.MAX_DEPTH + 1))
        # then
        assert result["data"] is None
        assert any(limit_message in message for message in messages(result)), result
        assert not await user_exists(email)
        # one level less is not refused for its depth
        assert not any(limit_message in m for m in messages(await api(mutation_of_depth(email, schema.MAX_DEPTH))))

    async def test_too_many_tokens_are_refused_before_any_resolver_runs(self, api: Api) -> None:
        email = unique_email("tokens")
        document = mutation_of_tokens(email, 5_000)
        assert 4_990 < token_count(document) <= 5_000
        result = await api(document)
        assert result["data"] is None
        assert messages(result) == [
            f"Syntax Error: Document contains more than {schema.MAX_TOKENS} tokens. Parsing aborted."
        ]
        assert not await user_exists(email)

    async def test_a_document_under_the_token_limit_runs(self, api: Api) -> None:
        email = unique_email("tokens")
        document = mutation_of_tokens(email, schema.MAX_TOKENS - 100)
        assert schema.MAX_TOKENS - 110 < token_count(document) <= schema.MAX_TOKENS
        result = await api(document)
        assert "errors" not in result, result
        assert await user_exists(email)

    async def test_too_many_aliases_hidden_in_fragments_are_refused(self, api: Api) -> None:
        email = unique_email("aliases")
        result = await api(mutation_with_hidden_aliases(email, schema.MAX_ALIASES + 1))
        assert result["data"] is None
        assert messages(result) == [f"{schema.MAX_ALIASES + 1} aliases found. Allowed: {schema.MAX_ALIASES}"]
        assert not await user_exists(email)

    async def test_aliases_up_to_the_limit_run(self, api: Api) -> None:
        email = unique_email("aliases")
        result = await api(mutation_with_hidden_aliases(email, schema.MAX_ALIASES))
        assert "errors" not in result, result
        assert result["data"]["created"]["user"]["id"]
        assert await user_exists(email)


class TestPageSize:
    async def test_a_page_above_the_cap_is_refused_with_a_clear_message(self, api: Api) -> None:
        admin = await tenant(api)
        result = await api(USERS_PAGE, {"first": 1000}, token=admin["token"])
        [error] = result["errors"]
        assert error["message"] == f"Page size must be between 0 and {MAX_PAGE_SIZE}."
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert result["data"]["viewer"]["account"] is None

    async def test_a_page_at_the_cap_works(self, api: Api) -> None:
        admin = await tenant(api)
        result = await api(USERS_PAGE, {"first": MAX_PAGE_SIZE}, token=admin["token"])
        assert "errors" not in result, result
        assert result["data"]["viewer"]["account"]["users"]["totalCount"] == 1


@pytest.fixture
async def production_api(production_settings: Settings) -> AsyncIterator[Api]:
    from server import create_app

    app = create_app(production_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


class TestProduction:
    async def test_introspection_is_refused(self, production_api: Api) -> None:
        result = await production_api(INTROSPECTION)
        assert result["data"] is None
        assert "introspection has been disabled" in messages(result)[0]

    async def test_field_errors_do_not_suggest_names(self, production_api: Api) -> None:
        result = await production_api(MISSPELLED)
        assert result["data"] is None
        assert messages(result) == ["Cannot query field 'viewr' on type 'Query'."]

    async def test_no_graphiql_page(self, production_api: Api) -> None:
        response = await production_api.http.get("/graphql", headers={"Accept": "text/html"})
        assert response.status_code != 200 or "graphiql" not in response.text.lower()

    async def test_a_mutation_via_get_is_refused(self, production_api: Api) -> None:
        # given: a signed-in session, so a mutation that ran would end it
        signed_up = await sign_up(production_api)
        token = await sign_in(production_api, signed_up["email"])
        # when
        response = await production_api.http.get(
            "/graphql", params={"query": SIGN_OUT_VIA_GET}, headers={"Authorization": f"Bearer {token}"}
        )
        # then: 405, as the GraphQL-over-HTTP specification asks, in JSON
        assert response.status_code == 405, response.text
        assert response.headers["Allow"] == "POST"
        assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        assert "signedOut" not in response.text
        assert (await production_api(VIEWER, token=token))["data"]["viewer"]["user"]["email"] == signed_up["email"]


class TestDevelopment:
    """What production hides is there in development: the production tests above can fail."""

    async def test_introspection_answers(self, api: Api) -> None:
        result = await api(INTROSPECTION)
        assert "Query" in {t["name"] for t in result["data"]["__schema"]["types"]}

    async def test_field_errors_suggest_names(self, api: Api) -> None:
        result = await api(MISSPELLED)
        assert messages(result) == ["Cannot query field 'viewr' on type 'Query'. Did you mean 'viewer'?"]

    async def test_graphiql_page(self, api: Api) -> None:
        response = await api.http.get("/graphql", headers={"Accept": "text/html"})
        assert response.status_code == 200
        assert "graphiql" in response.text.lower()


class TestUnexpectedErrors:
    async def test_are_masked_for_the_client_and_logged_in_full(
        self, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        # given
        async def boom(**kwargs: Any) -> None:
            raise RuntimeError("secret-token-xyz")

        monkeypatch.setattr(services.accounts, "sign_in", boom)
        caplog.set_level(logging.ERROR, logger="vouchsafe.graphql")
        # when
        variables = {"input": {"email": unique_email(), "password": PASSWORD}}
        response = await api.http.post("/graphql", json={"query": SIGN_IN, "variables": variables})
        # then: the client sees a generic error with the request id
        assert response.status_code == 200
        assert "secret-token-xyz" not in response.text
        [error] = response.json()["errors"]
        request_id = error["extensions"]["requestId"]
        assert request_id
        assert request_id != "-"
        assert response.headers["X-Request-Id"] == request_id
        assert error["message"] == f"Unexpected error. Request id: {request_id}"
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
        assert error["path"] == ["signIn"]
        # and the log has the trace, the secret and the same request id
        [record] = [r for r in caplog.records if request_id in r.getMessage()]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert record.exc_info[0] is RuntimeError
        logged = caplog.handler.format(record)
        assert "Traceback" in logged
        assert "secret-token-xyz" in logged


class TestBatching:
    async def test_an_array_of_operations_is_refused(self, api: Api) -> None:
        emails = [unique_email("batch"), unique_email("batch")]
        batch = [{"query": f"mutation {{ {sign_up_field(email)} }}"} for email in emails]
        response = await api.http.post("/graphql", json=batch)
        assert response.status_code == 400, response.text
        assert not response.text.lstrip().startswith("[")
        assert [await user_exists(email) for email in emails] == [False, False]
