"""Redeeming vouchers: exactly once, within the allowance, reusable after an early cancel or revoke."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from models import CertificateRequest, LedgerEntry, Voucher, VoucherOrderLine, VoucherStatus
from services import codes, redemption, staff
from services.events import KeptEvents
from settings import Settings
from tests.support.api import Api
from tests.support.factories import PASSWORD, codes_of, line, partner, redeem, sign_in, tenant, unique_email
from tests.support.running import shifted

BY_CODE = """query V($code: String!) { voucherByCode(code: $code) {
  code productName validityYears fqdns wildcards expiresAt status redeemable } }"""
CANCEL = """mutation C($id: ID!) { certificateRequestCancel(input: {id: $id}) {
  certificateRequest { status } voucherReleased notices { code } errors { code message } } }"""
REVOKE = """mutation C($id: ID!) { certificateRevoke(input: {id: $id}) {
  certificateRequest { status } voucherReleased notices { code } errors { code message } } }"""
ISSUE = """mutation I($id: ID!) { certificateRequestIssue(input: {id: $id}) {
  certificateRequest { status } errors { code } } }"""


def csr_for(cn: str, *sans: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


class TestVoucherByCode:
    async def test_shows_what_a_code_buys_in_any_spelling(self, api: Api) -> None:
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        for spelling in (code, code.lower(), code.replace("-", " "), code.replace("-", "").replace("0", "O")):
            found = (await api(BY_CODE, {"code": spelling}))["data"]["voucherByCode"]
            assert found is not None, spelling
            assert found["productName"] == "Basic OV"
            assert found["fqdns"] == 2
            assert found["wildcards"] == 1
            assert found["redeemable"] is True
            assert found["code"].endswith(code[-5:])
            assert code not in found["code"]
        assert (await api(BY_CODE, {"code": "VS-00000-00000-00000-00000"}))["data"]["voucherByCode"] is None
        assert (await api(BY_CODE, {"code": "not a code"}))["data"]["voucherByCode"] is None


class TestLookup:
    async def test_the_written_out_lookup_reads_what_the_orm_reads(self, api: Api, settings: Settings) -> None:
        # services.redemption writes its code lookup by hand (for speed); it must build the
        # same voucher and line as Tortoise's select_related, on either database.
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        # the lookup itself, apart from its rate limit
        found = await redemption._find(code, codes.CodeCipher(settings.code_key))  # noqa: SLF001
        assert found is not None
        orm = await Voucher.get(id=found.id).select_related("line")
        fields = set(Voucher._meta.fields_map) - set(Voucher._meta.fetch_fields)
        assert {f: getattr(found, f) for f in fields} == {f: getattr(orm, f) for f in fields}
        line_fields = set(VoucherOrderLine._meta.fields_map) - set(VoucherOrderLine._meta.fetch_fields)
        assert {f: getattr(found.line, f) for f in line_fields} == {f: getattr(orm.line, f) for f in line_fields}
        assert (
            await redemption._find(  # noqa: SLF001
                "VS-00000-00000-00000-00000", codes.CodeCipher(settings.code_key)
            )
            is None
        )


class TestRedeem:
    async def test_any_account_redeems_once(self, api: Api) -> None:
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        customer = await tenant(api)  # not a partner
        done = await redeem(api, customer["token"], code, additionalFqdns=["example.com"], wildcards=["*.example.com"])
        assert done["errors"] == []
        assert done["certificateRequest"]["status"] == "SUBMITTED"
        assert done["certificateRequest"]["additionalFqdns"] == ["example.com"]
        again = await redeem(api, customer["token"], code)
        assert [(e["code"], e["field"]) for e in again["errors"]] == [("VOUCHER_NOT_REDEEMABLE", ["input", "code"])]
        assert again["errors"][0]["message"] == "This voucher has been used."
        assert (await api(BY_CODE, {"code": code}))["data"]["voucherByCode"]["status"] == "VALID_USED"
        listed = await api(
            "{ certificateRequests { totalCount edges { node { commonName } } } }", token=customer["token"]
        )
        assert listed["data"]["certificateRequests"]["totalCount"] == 1
        # the partner's order history records the use
        history = await api(
            "{ voucherOrders { edges { node { history { edges { node { kind details } } } } } } }", token=p["token"]
        )
        events = history["data"]["voucherOrders"]["edges"][0]["node"]["history"]["edges"]
        # the worker's PDF_READY may land before or after the use: look the use up by its kind
        [used] = [e["node"] for e in events if e["node"]["kind"] == "VOUCHER_REDEEMED"]
        assert used["details"]["commonName"] == "www.example.com"
        assert used["details"]["voucher"] == code[-5:]
        # and the order can no longer be cancelled
        order_id = (await api("{ voucherOrders { edges { node { id } } } }", token=p["token"]))["data"][
            "voucherOrders"
        ]["edges"][0]["node"]["id"]
        cancel = await api(
            "mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code } } }",
            {"id": order_id},
            token=p["token"],
        )
        assert cancel["data"]["voucherOrderCancel"]["errors"][0]["code"] == "ORDER_HAS_REDEEMED_VOUCHERS"

    async def test_the_request_must_fit_the_allowance(self, api: Api) -> None:
        p = await partner(api)
        [code] = await codes_of(api, p, line("BASIC_OV", 1, fqdns=1, wildcards=0))
        customer = await tenant(api)
        cases: list[tuple[dict[str, Any], str, list[str]]] = [
            ({"additionalFqdns": ["second.example.com"]}, "ALLOWANCE_EXCEEDED", ["input", "additionalFqdns"]),
            ({"wildcards": ["*.example.com"]}, "ALLOWANCE_EXCEEDED", ["input", "wildcards"]),
            ({"additionalFqdns": ["not a name"]}, "INVALID", ["input", "additionalFqdns", "0"]),
            ({"wildcards": ["example.com"]}, "INVALID", ["input", "wildcards", "0"]),
        ]
        for extra, code_, field in cases:
            result = await redeem(api, customer["token"], code, **extra)
            assert [(e["code"], e["field"]) for e in result["errors"]] == [(code_, field)], extra
        bad_cn = await redeem(api, customer["token"], code, cn="-bad-.example")
        assert bad_cn["errors"][0]["field"] == ["input", "commonName"]
        assert (await Voucher.filter(status=VoucherStatus.VALID_USED, code_hint=code[-5:]).count()) == 0
        assert (await redeem(api, customer["token"], code, cn="www.example.com"))["errors"] == []

    async def test_a_csr_must_parse_and_match(self, api: Api) -> None:
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        customer = await tenant(api)
        garbage = await redeem(api, customer["token"], code, csr="-----BEGIN CERTIFICATE REQUEST-----\nxx\n")
        assert garbage["errors"][0]["code"] == "CSR_INVALID"
        other = await redeem(api, customer["token"], code, csr=csr_for("other.example.com"))
        assert other["errors"][0]["code"] == "CSR_MISMATCH"
        extra_san = await redeem(api, customer["token"], code, csr=csr_for("www.example.com", "evil.example.org"))
        assert extra_san["errors"][0]["code"] == "CSR_MISMATCH"
        good = await redeem(
            api,
            customer["token"],
            code,
            additionalFqdns=["example.com"],
            csr=csr_for("www.example.com", "www.example.com", "example.com"),
        )
        assert good["errors"] == []
        assert good["certificateRequest"]["hasCsr"] is True

    async def test_cancelled_or_expired_vouchers_cannot_be_redeemed(self, api: Api) -> None:
        p = await partner(api)
        codes = await codes_of(api, p)
        customer = await tenant(api)
        order_id = (await api("{ voucherOrders { edges { node { id } } } }", token=p["token"]))["data"][
            "voucherOrders"
        ]["edges"][0]["node"]["id"]
        await api(
            "mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code } } }",
            {"id": order_id},
            token=p["token"],
        )
        [refused] = (await redeem(api, customer["token"], codes[0]))["errors"]
        assert (refused["code"], refused["message"]) == ("VOUCHER_NOT_REDEEMABLE", "This voucher was cancelled.")
        [fresh, _] = await codes_of(api, p)
        with shifted(timedelta(days=366)):
            token = await sign_in(api, customer["email"])
            [refused] = (await redeem(api, token, fresh))["errors"]
            assert (refused["code"], refused["message"]) == ("VOUCHER_NOT_REDEEMABLE", "This voucher has expired.")
            # a request that also exceeds the allowance is told that first, as before the lookup moved into SQL
            [refused] = (await redeem(api, token, fresh, wildcards=["*.a.example.com", "*.b.example.com"]))["errors"]
            assert refused["code"] == "ALLOWANCE_EXCEEDED"


class TestReuse:
    async def _redeemed(self, api: Api) -> tuple[dict, str, str]:
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        customer = await tenant(api)
        done = await redeem(api, customer["token"], code)
        return customer, code, done["certificateRequest"]["id"]

    async def test_cancel_within_30_days_releases_the_voucher(self, api: Api) -> None:
        customer, code, request_id = await self._redeemed(api)
        with shifted(timedelta(days=30) - timedelta(minutes=1)):
            token = await sign_in(api, customer["email"])
            ended = (await api(CANCEL, {"id": request_id}, token=token))["data"]["certificateRequestCancel"]
            assert ended == {
                "certificateRequest": {"status": "CANCELLED"},
                "voucherReleased": True,
                "notices": [],
                "errors": [],
            }
            assert (await redeem(api, token, code, cn="new.example.com"))["errors"] == []
        assert await CertificateRequest.filter(common_name="new.example.com").count() == 1

    async def test_later_the_voucher_stays_used(self, api: Api) -> None:
        customer, code, request_id = await self._redeemed(api)
        with shifted(timedelta(days=30, minutes=1)):
            token = await sign_in(api, customer["email"])
            ended = (await api(CANCEL, {"id": request_id}, token=token))["data"]["certificateRequestCancel"]
            assert ended["voucherReleased"] is False
            assert ended["notices"] == [{"code": "REUSE_WINDOW_CLOSED"}]
            assert (await redeem(api, token, code))["errors"][0]["code"] == "VOUCHER_NOT_REDEEMABLE"

    async def test_revoking_an_issued_certificate_within_30_days(self, api: Api) -> None:
        customer, code, request_id = await self._redeemed(api)
        refused = (await api(REVOKE, {"id": request_id}, token=customer["token"]))["data"]["certificateRevoke"]
        assert refused["errors"][0]["code"] == "INVALID"  # not issued yet
        staff_email = unique_email("staff")
        await staff.create_staff(email=staff_email, password=PASSWORD)
        issued = await api(ISSUE, {"id": request_id}, token=await sign_in(api, staff_email))
        assert issued["data"]["certificateRequestIssue"]["certificateRequest"]["status"] == "ISSUED"
        revoked = (await api(REVOKE, {"id": request_id}, token=customer["token"]))["data"]["certificateRevoke"]
        assert revoked["certificateRequest"]["status"] == "REVOKED"
        assert revoked["voucherReleased"] is True
        assert (await api(BY_CODE, {"code": code}))["data"]["voucherByCode"]["redeemable"] is True

    async def test_only_the_requester_ends_a_request(self, api: Api) -> None:
        _, _, request_id = await self._redeemed(api)
        stranger = await tenant(api)
        ended = (await api(CANCEL, {"id": request_id}, token=stranger["token"]))["data"]["certificateRequestCancel"]
        assert ended["errors"][0]["code"] == "NOT_FOUND"


class TestGuessing:
    async def test_failed_lookups_are_limited_per_client_even_through_aliases(self, api: Api) -> None:
        aliases = " ".join(f'a{i}: voucherByCode(code: "VS-00000-00000-00000-{i:05d}") {{ code }}' for i in range(11))
        result = await api("{ " + aliases + " }")
        codes = [e["extensions"]["code"] for e in result.get("errors", [])]
        assert codes == ["RATE_LIMITED"]
        assert list(result["data"].values()) == [None] * 11  # ten unknown codes, then the refused eleventh
        later = await api(BY_CODE, {"code": "VS-00000-00000-00000-99999"})
        assert later["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

    async def test_failed_redemptions_are_limited_per_account(self, api: Api) -> None:
        customer = await tenant(api)
        outcomes = []
        for i in range(11):
            other_client = api.client()  # a new address each time: only the account limit applies
            result = await redeem(other_client, customer["token"], f"VS-00000-00000-00000-{i:05d}")
            outcomes.append(result["errors"][0]["code"])
        assert outcomes == ["NOT_FOUND"] * 10 + ["RATE_LIMITED"]


@pytest.mark.postgres
class TestRaces:
    async def test_twenty_sessions_one_code_one_request(self, api: Api) -> None:
        p = await partner(api)
        [code, _] = await codes_of(api, p)
        customers = [await tenant(api) for _ in range(20)]
        results = await asyncio.gather(*(redeem(api.client(), c["token"], code) for c in customers))
        assert sum(1 for r in results if not r["errors"]) == 1
        assert {r["errors"][0]["code"] for r in results if r["errors"]} == {"VOUCHER_NOT_REDEEMABLE"}
        voucher = await Voucher.get(code_hint=code[-5:], status=VoucherStatus.VALID_USED)
        assert await CertificateRequest.filter(voucher_id=voucher.id).count() == 1

    async def test_cancel_and_redeem_never_both_win(self, db: None, settings: object) -> None:
        from infra.ratelimit import RateLimiter
        from infra.redis import open_redis
        from models import LedgerEntryKind, PaymentMethod, VoucherOrder, VoucherOrderStatus
        from services import cancellation, ledger, orders, redemption
        from services.catalogue import LineRequest
        from services.codes import CodeCipher
        from services.errors import DomainError
        from services.payments import SandboxGateway
        from services.reveal import reveal_codes
        from tests.support.factories import balance_partner, tenant_admin

        buyer = await balance_partner(funds=200 * 17_500)
        redeemer = await tenant_admin(name="Racing customer")
        cipher, gateway = CodeCipher(b"r" * 32), SandboxGateway()
        redis = await open_redis(None)
        limiter = RateLimiter(redis)
        request = orders.OrderRequest(
            lines=[LineRequest("BASIC_OV", 1, 1, 1, 0)], payment_method=PaymentMethod.ACCOUNT_BALANCE
        )
        placed = [
            await orders.place_order(
                actor=buyer,
                request=request,
                gateway=gateway,
                cipher=cipher,
                public_url="http://127.0.0.1",
                bus=KeptEvents(),
            )
            for _ in range(200)
        ]
        codes = {
            o.id: (await reveal_codes(actor=buyer, order_id=o.id, cipher=cipher, bus=KeptEvents()))[0].code
            for o in placed
        }

        async def attempt(coro: object) -> bool:
            try:
                await coro  # type: ignore[misc]
            except DomainError:
                return False
            return True

        async def race(o: VoucherOrder) -> tuple[bool, bool]:
            cancel = cancellation.cancel_order(
                actor=buyer, order_id=o.id, idempotency_key=None, gateway=gateway, public_url="", bus=KeptEvents()
            )
            use = redemption.redeem(
                actor=redeemer,
                request=redemption.RequestInput(codes[o.id], "www.example.com", [], [], None),
                cipher=cipher,
                client=f"r03-{o.id}",
                limiter=limiter,
                bus=KeptEvents(),
            )
            cancelled, redeemed = await asyncio.gather(attempt(cancel), attempt(use))
            return cancelled, redeemed

        outcomes = []
        for start in range(0, 200, 25):
            outcomes += await asyncio.gather(*(race(o) for o in placed[start : start + 25]))
        assert all(c != r for c, r in outcomes), [o for o in outcomes if o[0] == o[1]][:5]
        for o, (cancelled, _redeemed) in zip(placed, outcomes, strict=True):
            fresh = await VoucherOrder.get(id=o.id)
            voucher = await Voucher.get(order_id=o.id)
            if cancelled:
                assert fresh.status == VoucherOrderStatus.CANCELLED
                assert voucher.status == VoucherStatus.CANCELLED
            else:
                assert fresh.status == VoucherOrderStatus.ACTIVE
                assert voucher.status == VoucherStatus.VALID_USED
        refunds = await LedgerEntry.filter(account_id=buyer.account_id, kind=LedgerEntryKind.REFUND).count()
        assert refunds == sum(1 for c, _ in outcomes if c)
        assert buyer.account_id not in [m.account_id for m in await ledger.verify()]
        await redis.aclose()
