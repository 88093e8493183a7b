"""Another tenant's object reads exactly like one that does not exist."""

from __future__ import annotations

import base64

from services import staff
from tests.support.api import Api
from tests.support.documents import API_KEY_CREATE, API_KEY_REVOKE, REDEEM, REVEAL
from tests.support.factories import PASSWORD, line, order, partner, sign_in, tenant, unique_email

NODE = "query Node($id: ID!) { node(id: $id) { id ... on User { email } ... on Account { name } } }"
NODES = "query Nodes($ids: [ID!]!) { nodes(ids: $ids) { id } }"
NODE_ID = "query Node($id: ID!) { node(id: $id) { id } }"
OWNED = """{
  viewer { user { id } account {
    id apiKeys(first: 1) { edges { node { id } } } ledger(first: 1) { edges { node { id } } } } }
  voucherOrders(first: 1) { edges { node { id vouchers(first: 1) { edges { node { id } } } } } }
}"""
IDS = "{ viewer { user { id } account { id } } }"
PARTNER_ENABLE = """
mutation PartnerEnable($input: PartnerEnableInput!) {
  partnerEnable(input: $input) { account { id isPartner } errors { code field message } }
}"""


def global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


async def ids_of(api: Api, token: str) -> dict[str, str]:
    viewer = (await api(IDS, token=token))["data"]["viewer"]
    return {"user": viewer["user"]["id"], "account": viewer["account"]["id"]}


class TestNodes:
    async def test_own_objects_resolve(self, api: Api) -> None:
        a = await tenant(api)
        ids = await ids_of(api, a["token"])
        assert (await api(NODE, {"id": ids["user"]}, token=a["token"]))["data"]["node"]["email"] == a["email"]
        assert (await api(NODE, {"id": ids["account"]}, token=a["token"]))["data"]["node"]["name"] == "Acme GmbH"

    async def test_another_tenants_objects_read_as_missing(self, api: Api) -> None:
        a, b = await tenant(api), await tenant(api)
        a_ids = await ids_of(api, a["token"])
        missing = global_id("User", 10**12)
        for node_id in (a_ids["user"], a_ids["account"]):
            theirs = await api(NODE, {"id": node_id}, token=b["token"])
            nothing = await api(NODE, {"id": missing}, token=b["token"])
            assert theirs == nothing == {"data": {"node": None}}
        listed = await api(NODES, {"ids": [a_ids["user"], missing]}, token=b["token"])
        assert listed == {"data": {"nodes": [None, None]}}

    async def test_every_node_type_of_another_tenant_reads_as_missing(self, api: Api) -> None:
        # given: one object of every node type, owned by A (a partner) or C (A's customer, who redeemed)
        a, b, c = await partner(api), await tenant(api), await tenant(api)
        await api(API_KEY_CREATE, {"input": {"name": "a"}}, token=a["token"])
        placed = await order(api, a["token"], line(quantity=1), paymentMethod="ACCOUNT_BALANCE")
        revealed = await api(REVEAL, {"id": placed["order"]["id"]}, token=a["token"])
        [code] = [x["code"] for x in revealed["data"]["voucherCodesReveal"]["codes"]]
        redeemed = await api(REDEEM, {"input": {"code": code, "commonName": "www.example.com"}}, token=c["token"])
        owned = (await api(OWNED, token=a["token"]))["data"]
        account = owned["viewer"]["account"]
        order_node = owned["voucherOrders"]["edges"][0]["node"]
        ids = {
            "User": (owned["viewer"]["user"]["id"], a),
            "Account": (account["id"], a),
            "ApiKey": (account["apiKeys"]["edges"][0]["node"]["id"], a),
            "LedgerEntry": (account["ledger"]["edges"][0]["node"]["id"], a),
            "VoucherOrder": (order_node["id"], a),
            "Voucher": (order_node["vouchers"]["edges"][0]["node"]["id"], a),
            "CertificateRequest": (redeemed["data"]["voucherRedeem"]["certificateRequest"]["id"], c),
        }
        for type_name, (node_id, owner) in ids.items():
            # the owner reads it (the id is real), B reads it as an id that does not exist
            assert (await api(NODE_ID, {"id": node_id}, token=owner["token"]))["data"]["node"] == {"id": node_id}
            theirs = await api(NODE_ID, {"id": node_id}, token=b["token"])
            nothing = await api(NODE_ID, {"id": global_id(type_name, 10**12)}, token=b["token"])
            assert theirs == nothing == {"data": {"node": None}}, type_name
        listed = await api(NODES, {"ids": [node_id for node_id, _ in ids.values()]}, token=b["token"])
        assert listed == {"data": {"nodes": [None] * len(ids)}}

    async def test_anonymous_reads_nothing(self, api: Api) -> None:
        a = await tenant(api)
        a_ids = await ids_of(api, a["token"])
        assert (await api(NODE, {"id": a_ids["user"]}))["data"]["node"] is None


class TestMutationsAcrossTenants:
    async def test_revoking_another_tenants_key_is_not_found(self, api: Api) -> None:
        a, b = await tenant(api), await tenant(api)
        created = (await api(API_KEY_CREATE, {"input": {"name": "a"}}, token=a["token"]))["data"]["apiKeyCreate"]
        theirs = await api(API_KEY_REVOKE, {"input": {"id": created["apiKey"]["id"]}}, token=b["token"])
        nothing = await api(API_KEY_REVOKE, {"input": {"id": global_id("ApiKey", 10**12)}}, token=b["token"])
        assert theirs == nothing
        assert theirs["data"]["apiKeyRevoke"]["errors"][0]["code"] == "NOT_FOUND"
        # and A's key still works
        viewer = await api("{ viewer { account { name } } }", token=created["secret"])
        assert viewer["data"]["viewer"]["account"]["name"] == "Acme GmbH"

    async def test_an_id_of_another_type_is_not_found(self, api: Api) -> None:
        a = await tenant(api)
        a_ids = await ids_of(api, a["token"])
        result = await api(API_KEY_REVOKE, {"input": {"id": a_ids["user"]}}, token=a["token"])
        assert result["data"]["apiKeyRevoke"]["errors"][0]["code"] == "NOT_FOUND"


class TestStaff:
    async def test_only_staff_enable_partners(self, api: Api) -> None:
        a = await tenant(api)
        account_id = (await ids_of(api, a["token"]))["account"]
        refused = await api(PARTNER_ENABLE, {"input": {"accountId": account_id}}, token=a["token"])
        assert refused["data"]["partnerEnable"]["errors"][0]["code"] == "PERMISSION_DENIED"

        staff_email = unique_email("staff")
        await staff.create_staff(email=staff_email, password=PASSWORD)
        staff_token = await sign_in(api, staff_email)
        viewer = (await api("{ viewer { user { isStaff } account { id } } }", token=staff_token))["data"]["viewer"]
        assert viewer == {"user": {"isStaff": True}, "account": None}
        enabled = await api(PARTNER_ENABLE, {"input": {"accountId": account_id}}, token=staff_token)
        assert enabled["data"]["partnerEnable"] == {"account": {"id": account_id, "isPartner": True}, "errors": []}
        seen = await api("{ viewer { account { isPartner } } }", token=a["token"])
        assert seen["data"]["viewer"]["account"]["isPartner"] is True


FAILED_JOBS = "{ failedJobs { id task attempts lastError } }"
JOB_RETRY = "mutation R($id: ID!) { jobRetry(input: {id: $id}) { retried errors { code } } }"


class TestFailedJobs:
    async def test_staff_see_and_retry_failed_jobs_others_cannot(self, api: Api) -> None:
        from models import OutboxMessage, OutboxStatus

        # A task no worker knows: if a worker takes it after the retry, it just fails again.
        failed = await OutboxMessage.create(
            task="unknown_task",
            payload={},
            status=OutboxStatus.FAILED,
            attempts=5,
            last_error="SMTPRecipientsRefused: nobody",
        )
        staff_email = unique_email("staff")
        await staff.create_staff(email=staff_email, password=PASSWORD)
        staff_token = await sign_in(api, staff_email)
        jobs = (await api(FAILED_JOBS, token=staff_token))["data"]["failedJobs"]
        assert {
            "id": str(failed.id),
            "task": "unknown_task",
            "attempts": 5,
            "lastError": "SMTPRecipientsRefused: nobody",
        } in jobs
        a = await tenant(api)
        refused = await api(FAILED_JOBS, token=a["token"])
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
        assert (await api(JOB_RETRY, {"id": str(failed.id)}, token=a["token"]))["data"]["jobRetry"]["errors"][0][
            "code"
        ] == "PERMISSION_DENIED"
        retried = await api(JOB_RETRY, {"id": str(failed.id)}, token=staff_token)
        assert retried["data"]["jobRetry"] == {"retried": True, "errors": []}
        assert (await OutboxMessage.get(id=failed.id)).status == OutboxStatus.PENDING
