"""Sign-up, sign-in, sessions, API keys and roles, through HTTP as a client would."""

from __future__ import annotations

from datetime import timedelta

from tests.support.api import Api
from tests.support.documents import API_KEY_CREATE, API_KEY_REVOKE
from tests.support.factories import PASSWORD, SIGN_IN, SIGN_UP, sign_in, sign_up, tenant, unique_email
from tests.support.running import shifted

VIEWER = "{ viewer { user { id email role } account { id name locale isPartner balance { amount currencyCode } } } }"
SIGN_OUT = "mutation { signOut { signedOut errors { code message } } }"
USER_CREATE = """
mutation UserCreate($input: UserCreateInput!) {
  userCreate(input: $input) { user { id email role } errors { code field message } }
}"""


def unauthenticated(result: dict) -> bool:
    return result["data"] is None and result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


class TestSignUp:
    async def test_creates_account_with_admin_and_viewer_sees_it(self, api: Api) -> None:
        # given
        account = await tenant(api, accountName="Müller & Söhne", locale="de")
        # when
        result = await api(VIEWER, token=account["token"])
        # then
        viewer = result["data"]["viewer"]
        assert viewer["user"]["email"] == account["email"]
        assert viewer["user"]["role"] == "ADMIN"
        assert viewer["account"]["name"] == "Müller & Söhne"
        assert viewer["account"]["locale"] == "de"
        assert viewer["account"]["isPartner"] is False
        assert viewer["account"]["balance"] == {"amount": "0.00", "currencyCode": "USD"}

    async def test_email_taken(self, api: Api) -> None:
        account = await sign_up(api)
        result = await api(SIGN_UP, {"input": {**_signup_input(), "email": account["email"].upper()}})
        assert result["data"]["signUp"]["errors"] == [
            {
                "code": "EMAIL_TAKEN",
                "field": ["input", "email"],
                "message": "An account with this e-mail already exists.",
            }
        ]

    async def test_bad_input_is_refused_on_its_field(self, api: Api) -> None:
        cases = {
            "email": {"email": "not-an-email"},
            "password": {"password": "short"},
            "accountName": {"accountName": "evil\u202ename"},
            "locale": {"locale": "xx"},
        }
        for field, override in cases.items():
            result = await api(SIGN_UP, {"input": {**_signup_input(), **override}})
            errors = result["data"]["signUp"]["errors"]
            assert [(e["code"], e["field"]) for e in errors] == [("INVALID", ["input", field])], field


def _signup_input() -> dict:
    return {"email": unique_email(), "password": PASSWORD, "accountName": "Acme", "locale": "en"}


class TestSignIn:
    async def test_wrong_password_and_unknown_email_answer_alike(self, api: Api) -> None:
        account = await sign_up(api)
        wrong = await api(SIGN_IN, {"input": {"email": account["email"], "password": "wrong password!"}})
        unknown = await api(SIGN_IN, {"input": {"email": unique_email(), "password": PASSWORD}})
        assert wrong["data"]["signIn"] == unknown["data"]["signIn"]
        assert wrong["data"]["signIn"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
        assert wrong["data"]["signIn"]["token"] is None

    async def test_failures_are_rate_limited_per_email(self, api: Api) -> None:
        account = await sign_up(api)
        codes = []
        for _ in range(11):
            other_client = api.client()  # a new address each time: only the e-mail limit applies
            result = await other_client(SIGN_IN, {"input": {"email": account["email"], "password": "wrong password!"}})
            codes.append(result["data"]["signIn"]["errors"][0]["code"])
        assert codes == ["INVALID_CREDENTIALS"] * 10 + ["RATE_LIMITED"]
        # the right password is refused too while the window lasts
        result = await api(SIGN_IN, {"input": {"email": account["email"], "password": PASSWORD}})
        assert result["data"]["signIn"]["errors"][0]["code"] == "RATE_LIMITED"

    async def test_failures_are_rate_limited_per_client(self, api: Api) -> None:
        codes = []
        for _ in range(31):
            result = await api(SIGN_IN, {"input": {"email": unique_email(), "password": "wrong password!"}})
            codes.append(result["data"]["signIn"]["errors"][0]["code"])
        assert codes[-1] == "RATE_LIMITED"
        assert codes[:30] == ["INVALID_CREDENTIALS"] * 30

    async def test_successes_do_not_count(self, api: Api) -> None:
        account = await sign_up(api)
        for _ in range(12):
            await sign_in(api, account["email"])


class TestSessions:
    async def test_no_token_or_a_bad_token_is_unauthenticated(self, api: Api) -> None:
        assert unauthenticated(await api(VIEWER))
        assert unauthenticated(await api(VIEWER, token="vss_forged"))
        assert unauthenticated(await api(VIEWER, token="garbage"))

    async def test_sign_out_revokes_the_token(self, api: Api) -> None:
        account = await tenant(api)
        other_session = await sign_in(api, account["email"])
        result = await api(SIGN_OUT, token=account["token"])
        assert result["data"]["signOut"] == {"signedOut": True, "errors": []}
        assert unauthenticated(await api(VIEWER, token=account["token"]))
        # only that session ends
        assert (await api(VIEWER, token=other_session))["data"]["viewer"]["user"]["email"] == account["email"]

    async def test_sessions_expire(self, api: Api) -> None:
        account = await tenant(api)
        with shifted(timedelta(days=14, minutes=1)):
            assert unauthenticated(await api(VIEWER, token=account["token"]))
        assert not unauthenticated(await api(VIEWER, token=account["token"]))


class TestRoles:
    async def test_admin_adds_users_of_each_role(self, api: Api) -> None:
        admin = await tenant(api)
        for role in ("ADMIN", "FINANCE", "MEMBER"):
            email = unique_email(role.lower())
            result = await api(
                USER_CREATE, {"input": {"email": email, "password": PASSWORD, "role": role}}, token=admin["token"]
            )
            assert result["data"]["userCreate"]["user"]["role"] == role
            token = await sign_in(api, email)
            viewer = (await api(VIEWER, token=token))["data"]["viewer"]
            assert (
                viewer["account"]["id"] == (await api(VIEWER, token=admin["token"]))["data"]["viewer"]["account"]["id"]
            )

    async def test_only_admins_manage_users_and_keys(self, api: Api) -> None:
        admin = await tenant(api)
        for role in ("FINANCE", "MEMBER"):
            email = unique_email(role.lower())
            await api(
                USER_CREATE, {"input": {"email": email, "password": PASSWORD, "role": role}}, token=admin["token"]
            )
            token = await sign_in(api, email)
            created = await api(
                USER_CREATE, {"input": {"email": unique_email(), "password": PASSWORD, "role": "ADMIN"}}, token=token
            )
            assert created["data"]["userCreate"]["errors"][0]["code"] == "PERMISSION_DENIED"
            key = await api(API_KEY_CREATE, {"input": {"name": "ci"}}, token=token)
            assert key["data"]["apiKeyCreate"]["errors"][0]["code"] == "PERMISSION_DENIED"


class TestApiKeys:
    async def test_secret_is_shown_once_and_authenticates(self, api: Api) -> None:
        admin = await tenant(api)
        result = await api(
            API_KEY_CREATE, {"input": {"name": "Key Vault", "channel": "AZURE_KEY_VAULT"}}, token=admin["token"]
        )
        payload = result["data"]["apiKeyCreate"]
        secret = payload["secret"]
        assert secret.startswith("vsk_")
        assert payload["apiKey"]["channel"] == "AZURE_KEY_VAULT"
        assert secret.startswith(payload["apiKey"]["prefix"])
        assert len(payload["apiKey"]["prefix"]) < 12
        viewer = (await api(VIEWER, token=secret))["data"]["viewer"]
        assert viewer["user"] is None
        assert viewer["account"]["name"] == "Acme GmbH"
        listed = await api(
            "{ viewer { account { apiKeys { totalCount edges { node { name prefix } } } } } }", token=admin["token"]
        )
        assert "secret" not in str(listed)

    async def test_revoked_key_no_longer_authenticates(self, api: Api) -> None:
        admin = await tenant(api)
        created = (await api(API_KEY_CREATE, {"input": {"name": "ci"}}, token=admin["token"]))["data"]["apiKeyCreate"]
        revoked = await api(API_KEY_REVOKE, {"input": {"id": created["apiKey"]["id"]}}, token=admin["token"])
        assert revoked["data"]["apiKeyRevoke"]["apiKey"]["revokedAt"] is not None
        assert unauthenticated(await api(VIEWER, token=created["secret"]))
