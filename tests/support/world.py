"""The model of money and voucher states the concurrent tests check the database against, and the invariants."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from infra import clock
from infra.ratelimit import RateLimiter
from models import (
    Account,
    CertificateRequest,
    CertificateRequestStatus,
    LedgerEntry,
    LedgerEntryKind,
    PaymentMethod,
    Role,
    User,
    Voucher,
    VoucherOrder,
    VoucherOrderStatus,
    VoucherStatus,
)
from services import cancellation, expiry, finance, ledger, orders, redemption
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.errors import DomainError, ErrorCode
from services.events import KeptEvents
from services.payments import SandboxGateway
from services.reveal import reveal_codes
from tests.support.factories import balance_partner, unique_email

PARTNERS, CUSTOMERS = 3, 2
URL = "http://127.0.0.1"
# A refusal is an answer, not a failure: these are the ones the operations may give.
REFUSALS = {
    ErrorCode.INSUFFICIENT_FUNDS,
    ErrorCode.ORDER_ALREADY_CANCELLED,
    ErrorCode.ORDER_HAS_REDEEMED_VOUCHERS,
    ErrorCode.ORDER_HAS_EXPIRED_VOUCHERS,
    ErrorCode.VOUCHER_NOT_REDEEMABLE,
    ErrorCode.INVALID,  # ending a request that another burst member ended first
}
ACTIVE = (CertificateRequestStatus.SUBMITTED, CertificateRequestStatus.ISSUED)

account = st.integers(0, PARTNERS - 1)
pick = st.integers(0, 50)  # the n-th of what exists, modulo its number
operation = st.one_of(
    st.tuples(st.just("deposit"), account, st.sampled_from(["50.00", "175.00", "400.00"])),
    st.tuples(st.just("purchase"), account, st.integers(1, 3)),
    st.tuples(st.just("cancel"), account, pick),
    st.tuples(st.just("redeem"), st.integers(0, CUSTOMERS - 1), pick),
    st.tuples(st.just("release"), pick),
    st.tuples(st.just("expire"), account, pick),
)
program = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=1, max_size=6)


@dataclass
class World:
    partners: list[Actor]
    customers: list[Actor]
    cipher: CodeCipher
    limiter: RateLimiter
    expected: dict[int, int]  # account id -> the balance the successful operations make
    orders: dict[int, list[VoucherOrder]] = field(default_factory=dict)  # account id -> its orders
    codes: list[str] = field(default_factory=list)
    requests: list[tuple[Actor, int]] = field(default_factory=list)
    clients: itertools.count[int] = field(default_factory=itertools.count)


async def new_world(cipher: CodeCipher, limiter: RateLimiter) -> World:
    async def customer() -> Actor:
        account = await Account.create(name="Burst customer")
        user = await User.create(email=unique_email("r02"), password_hash="x", account=account, role=Role.ADMIN)
        return Actor(user_id=user.id, account_id=account.id, role=Role.ADMIN)

    partners = [await balance_partner() for _ in range(PARTNERS)]
    customers = [await customer() for _ in range(CUSTOMERS)]
    expected = {p.require_account(): 0 for p in partners}
    world = World(partners, customers, cipher, limiter, expected, {a: [] for a in expected})
    # Every partner starts funded and with an order, so that the first burst already has
    # orders to cancel and expire and codes to redeem (the model counts these too).
    for n in range(PARTNERS):
        assert await run(world, ("deposit", n, "1000.00")) == "ok"
        assert await run(world, ("purchase", n, 2)) == "ok"
    return world


def nth(items: list[Any], n: int) -> Any:
    return items[n % len(items)] if items else None


async def run(world: World, op: tuple[Any, ...]) -> str:
    """One operation through the services; its outcome ('ok', a refusal code, or 'skip')."""
    kind, *args = op
    gateway = SandboxGateway()
    try:
        if kind == "deposit":
            partner, amount = world.partners[args[0]], args[1]
            entry = await finance.deposit(
                actor=partner,
                amount=amount,
                card_token="tok_visa",
                idempotency_key=None,
                gateway=gateway,
                public_url=URL,
                bus=KeptEvents(),
            )
            world.expected[partner.require_account()] += entry.amount
        elif kind == "purchase":
            partner, quantity = world.partners[args[0]], args[1]
            request = orders.OrderRequest(
                lines=[LineRequest("BASIC_OV", quantity, 1, 1, 0)], payment_method=PaymentMethod.ACCOUNT_BALANCE
            )
            order = await orders.place_order(
                actor=partner, request=request, gateway=gateway, cipher=world.cipher, public_url=URL, bus=KeptEvents()
            )
            world.expected[partner.require_account()] -= order.total
            world.orders[partner.require_account()].append(order)
            world.codes += [
                c.code
                for c in await reveal_codes(actor=partner, order_id=order.id, cipher=world.cipher, bus=KeptEvents())
            ]
        elif kind == "cancel":
            partner = world.partners[args[0]]
            order = nth(world.orders[partner.require_account()], args[1])
            if order is None:
                return "skip"
            await cancellation.cancel_order(
                actor=partner,
                order_id=order.id,
                idempotency_key=None,
                gateway=gateway,
                public_url=URL,
                bus=KeptEvents(),
            )
            world.expected[partner.require_account()] += order.total
        elif kind == "redeem":
            customer, code = world.customers[args[0]], nth(world.codes, args[1])
            if code is None:
                return "skip"
            made = await redemption.redeem(
                actor=customer,
                request=redemption.RequestInput(code, "www.example.com", [], [], None),
                cipher=world.cipher,
                client=f"r02-{next(world.clients)}",
                limiter=world.limiter,
                bus=KeptEvents(),
            )
            world.requests.append((customer, made.id))
        elif kind == "release":
            made = nth(world.requests, args[0])
            if made is None:
                return "skip"
            await redemption.end_request(actor=made[0], request_id=made[1], revoke=False, bus=KeptEvents())
        else:  # expire: the order's vouchers come due (a year passes for it), then the sweep runs
            order = nth(world.orders[world.partners[args[0]].require_account()], args[1])
            if order is None:
                return "skip"
            await Voucher.filter(order_id=order.id).update(expires_at=clock.now() - timedelta(seconds=1))
            await expiry.expire_due(bus=KeptEvents())
    except DomainError as error:
        if error.code not in REFUSALS:
            raise
        return error.code.value
    return "ok"


async def check(world: World) -> None:
    ids = list(world.expected)
    accounts = {a.id: a.balance for a in await Account.filter(id__in=ids)}
    assert not [m for m in await ledger.verify() if m.account_id in ids], "I1: balance != ledger sum"
    assert all(balance >= 0 for balance in accounts.values()), f"I2: {accounts}"
    assert accounts == world.expected, "balances differ from what the successful operations did"
    placed = await VoucherOrder.filter(account_id__in=ids)
    vouchers = await Voucher.filter(order_id__in=[o.id for o in placed])
    active: dict[int, int] = {}
    for r in await CertificateRequest.filter(voucher_id__in=[v.id for v in vouchers], status__in=ACTIVE):
        active[r.voucher_id] = active.get(r.voucher_id, 0) + 1
    for v in vouchers:
        # A request ended after the voucher expired leaves it used, without an active request.
        allowed = {0, 1} if v.status == VoucherStatus.VALID_USED else {0}
        assert active.get(v.id, 0) in allowed, f"I3: voucher {v.id} {v.status} has {active.get(v.id)} active"
    refunds: dict[int, list[int]] = {}
    for e in await LedgerEntry.filter(account_id__in=ids, kind=LedgerEntryKind.REFUND):
        refunds.setdefault(int(e.order_id or 0), []).append(e.amount)
    for o in placed:
        states = {v.status for v in vouchers if v.order_id == o.id}
        if o.status == VoucherOrderStatus.CANCELLED:
            assert states == {VoucherStatus.CANCELLED}, f"I4: cancelled order {o.id} has {states}"
            assert refunds.get(o.id) == [o.total], f"I4: order {o.id} refunds {refunds.get(o.id)}"
        else:
            assert VoucherStatus.CANCELLED not in states, f"order {o.id}: {states}"
            assert o.id not in refunds, f"order {o.id}: {refunds.get(o.id)}"
