"""A partner's back office on Python's gql, against an allow-list `vouchsafe serve` (issue 25).

gql parses a document and sends graphql-core's print of it, not the text it was given; a
manifest holds the text as the developer wrote it. Both forms are trusted: `documents load`
stores each document's printed form too, and the server trusts the printed forms of the
project's own documents. Without that, every gql request in allow-list mode was refused.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from cli_documents import MANIFEST
from tests.support import live
from tests.support.factories import PASSWORD, unique_email
from tests.support.processes import process_env, run_cli, serving

ONLY = {"VOUCHSAFE_TRUSTED_DOCUMENTS": "only"}
# As a developer keeps them in .graphql files: gql sends none of these texts as they are.
SIGN_UP = """mutation BackOfficeSignUp($input: SignUpInput!) {
  signUp(input: $input) { errors { code field } }
}
"""
SIGN_IN = """mutation BackOfficeSignIn($input: SignInInput!) {
  signIn(input: $input) { token errors { code } }
}
"""
VIEWER = """# who the token is
query BackOfficeViewer { viewer { user { email } } }
"""
ACCOUNT = """subscription BackOfficeAccount {
  accountUpdated { name }
}
"""
# The redemption page's, from the project's own manifest (trusted without a load).
(OWN,) = [text for text in json.loads(MANIFEST.read_text()).values() if text.startswith("query RedeemVoucher(")]


def test_gql_runs_the_loaded_documents_and_nothing_else(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    manifest = tmp_path / "back-office.json"
    manifest.write_text(json.dumps({"sign-up": SIGN_UP, "sign-in": SIGN_IN, "viewer": VIEWER, "account": ACCOUNT}))
    env = process_env(data, **ONLY)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    loaded = run_cli("documents", "load", str(manifest), env=env, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "4 documents added" in loaded.stdout
    assert "4 added in graphql-core's printed form" in loaded.stdout
    again = run_cli("documents", "load", str(manifest), env=env, cwd=tmp_path)
    assert "0 documents added, 4 already known" in again.stdout
    assert "printed form" not in again.stdout  # known already: nothing new to say

    with serving(data, log, extra_env=ONLY) as http:
        url = f"{http.base_url}/graphql"
        email = unique_email("gql")
        with Client(transport=HTTPXTransport(url=url, timeout=10)) as session:
            account = {"email": email, "password": PASSWORD, "accountName": "Back Office", "locale": "en"}
            assert (
                session.execute(GraphQLRequest(SIGN_UP, variable_values={"input": account}))["signUp"]["errors"] == []
            )
            credentials = {"input": {"email": email, "password": PASSWORD}}
            signed = session.execute(GraphQLRequest(SIGN_IN, variable_values=credentials))
            token = signed["signIn"]["token"]
            found = session.execute(GraphQLRequest(OWN, variable_values={"code": "VS-AAAAA-AAAAA-AAAAA-AAAAA"}))
            assert found == {"voucherByCode": None}
            with pytest.raises(TransportQueryError) as refused:
                session.execute(gql("query Unlisted { products { code } }"))
            assert refused.value.errors is not None
            assert refused.value.errors[0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        headers = {"Authorization": f"Bearer {token}"}
        with Client(transport=HTTPXTransport(url=url, headers=headers, timeout=10)) as session:
            assert session.execute(gql(VIEWER)) == {"viewer": {"user": {"email": email}}}
        # Over the WebSocket (graphql-transport-ws) as well: the stored subscription runs, no other.
        asyncio.run(follow_the_account(url.replace("http://", "ws://"), token))


async def follow_the_account(url: str, token: str) -> None:
    async with Client(transport=live.transport(url, token)) as session:
        first = await asyncio.wait_for(anext(aiter(session.subscribe(GraphQLRequest(ACCOUNT)))), timeout=10)
        assert first == {"accountUpdated": {"name": "Back Office"}}
        unlisted = GraphQLRequest("subscription Unlisted { accountUpdated { currency } }")
        with pytest.raises(TransportQueryError) as refused:
            await asyncio.wait_for(anext(aiter(session.subscribe(unlisted))), timeout=10)
        assert refused.value.errors is not None
        assert refused.value.errors[0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
