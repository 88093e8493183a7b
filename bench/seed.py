"""Every row the bench writes before measuring, made through the project's own code paths.

Partners are made as tests/support/factories.py makes them (sign-up, partner feature on, balance
billing on, a sandbox card deposit); the rest of what their orders cost is credited by a
ledger DEPOSIT entry (card deposits stop at 100,000.00 and the data set costs ~$190M).
Every order is placed by `place_order`, paid by balance: quote, debit, order, lines,
sealed codes copied in with COPY, history and outbox rows, in one transaction.

An order above the service's cap of 10,000 vouchers (the data set's largest, 100,000; W4's
1,000,000) goes through that same `place_order` with the order caps lifted for that call
only (`lifted_caps`): lines of at most 10,000 (what the database's CHECK allows). Ten
orders would not be one order of 100,000; rows written by hand would not be the project's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tortoise import connections
from tortoise.transactions import in_transaction

from infra.ratelimit import RateLimiter
from models import LedgerEntryKind, OutboxStatus, PaymentMethod, Product, Role
from services import accounts, catalogue, codes, finance, staff
from services.actors import Actor, authenticate
from services.catalogue import LineRequest
from services.events import KeptEvents
from services.ledger import post_entry
from services.orders import OrderRequest, place_order
from services.payments import SandboxGateway

PUBLIC_URL = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery"
CARD_DEPOSIT = "100000.00"  # the most one card deposit may be (services.finance.DEPOSIT_MAX)
# (product, validity years, FQDNs): every line covers at least one plain name, so any
# voucher of the data set can be redeemed for a bare common name.
SHAPES = [("BASIC_OV", 1, 1), ("BASIC_OV", 2, 2), ("SECURE_SITE_OV", 1, 1), ("BASIC_EV", 1, 1)]
Shape = tuple[str, int, int]


@dataclass(frozen=True)
class SeedPlan:
    accounts: int
    orders: int
    vouchers: int
    largest: int  # exactly one order of this size

    @staticmethod
    def full() -> SeedPlan:
        return SeedPlan(accounts=50, orders=2_000, vouchers=1_000_000, largest=100_000)

    @staticmethod
    def quick() -> SeedPlan:
        return SeedPlan(accounts=5, orders=50, vouchers=20_000, largest=2_000)


@dataclass(frozen=True)
class Seeded:
    partners: list[Actor]
    largest_order_id: int
    order_ids: list[int]
    vouchers: int
    seconds: float


@dataclass(frozen=True)
class Customer:
    """A signed-up account that is no partner (one ADMIN user), and a session token when signed in."""

    actor: Actor
    email: str
    token: str


def email(kind: str) -> str:
    return f"bench-{kind}-{secrets.token_hex(5)}@example.com"


def order_sizes(plan: SeedPlan, rng: random.Random, *, sigma: float = 1.2) -> list[int]:
    """`plan.orders` lognormal sizes summing to `plan.vouchers`: the largest first, the rest within 1..10,000."""
    rest, total = plan.orders - 1, plan.vouchers - plan.largest
    cap = catalogue.MAX_VOUCHERS
    if not rest <= total <= rest * cap:
        raise ValueError("the plan's sizes cannot add up")
    raw = [rng.lognormvariate(0.0, sigma) for _ in range(rest)]
    scale = total / sum(raw)
    sizes = [min(cap, max(1, round(x * scale))) for x in raw]
    # Rounding and clamping leave a difference: spread it one voucher at a time, largest orders first.
    order = sorted(range(rest), key=lambda i: -sizes[i])
    diff = total - sum(sizes)
    while diff:
        step = 1 if diff > 0 else -1
        for i in order:
            if diff and 1 <= sizes[i] + step <= cap:
                sizes[i] += step
                diff -= step
    return [plan.largest, *sizes]


def lines_for(size: int, shape: Shape) -> list[LineRequest]:
    product, years, fqdns = shape
    per_line = catalogue.MAX_QUANTITY
    return [
        LineRequest(product, min(per_line, size - start), validity_years=years, fqdns=fqdns, wildcards=0)
        for start in range(0, size, per_line)
    ]


@contextlib.contextmanager
def lifted_caps(vouchers: int) -> Iterator[None]:
    """The order caps (10,000 vouchers, 20 lines) raised for one large order; a line stays <= 10,000."""
    saved = catalogue.MAX_VOUCHERS, catalogue.MAX_LINES
    catalogue.MAX_VOUCHERS = max(saved[0], vouchers)
    catalogue.MAX_LINES = max(saved[1], math.ceil(vouchers / catalogue.MAX_QUANTITY))
    try:
        yield
    finally:
        catalogue.MAX_VOUCHERS, catalogue.MAX_LINES = saved


async def cost(lines: list[LineRequest], orders: int = 1) -> int:
    """What `orders` orders of these lines cost, in minor units (priced line by line: no order cap applies)."""
    products = {p.code: p for p in await Product.filter(code__in=[line.product_code for line in lines])}
    total = sum(
        line.quantity
        * catalogue.unit_price(
            products[line.product_code], validity_years=line.validity_years, fqdns=line.fqdns, wildcards=line.wildcards
        )
        for line in lines
    )
    return total * orders


async def partner(name: str, *, funds: int, address: str | None = None) -> Actor:
    """A partner as the test factories make one, funded with `funds` minor units (at least one card deposit)."""
    actor = await account(name, address or email("partner"))
    account_id = actor.require_account()
    await staff.set_partner(account_id=account_id, enabled=True, bus=KeptEvents())
    await finance.update_settings(actor=actor, bill_to_balance_enabled=True, bus=KeptEvents())
    entry = await finance.deposit(
        actor=actor,
        amount=CARD_DEPOSIT,
        card_token="tok_visa",
        idempotency_key=None,
        gateway=SandboxGateway(),
        public_url=PUBLIC_URL,
        bus=KeptEvents(),
    )
    if funds > entry.amount:
        async with in_transaction() as conn:
            await post_entry(conn, account_id=account_id, kind=LedgerEntryKind.DEPOSIT, amount=funds - entry.amount)
    return actor


async def account(name: str, address: str) -> Actor:
    """A signed-up account (not a partner) and its first user, an ADMIN."""
    user = await accounts.sign_up(
        email=address, password=PASSWORD, account_name=name, locale="en", public_url=PUBLIC_URL
    )
    return Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)


async def customer(name: str, limiter: RateLimiter) -> Customer:
    """A signed-up account (not a partner), signed in: redeemers."""
    address = email("customer")
    user = await account(name, address)
    signed_in = await accounts.sign_in(email=address, password=PASSWORD, client="bench-seed", limiter=limiter)
    actor = await authenticate(signed_in.token)  # as a request carrying the token is served
    if actor is None or actor.user_id != user.user_id:
        raise RuntimeError("bench: a fresh session token did not authenticate")
    return Customer(actor, address, signed_in.token)


async def place(actor: Actor, lines: list[LineRequest], cipher: codes.CodeCipher, customer_name: str = "") -> int:
    """One order paid by balance, through `place_order` (caps lifted above 10,000 vouchers); its id."""
    size = sum(line.quantity for line in lines)
    request = OrderRequest(
        lines=lines,
        customer_name=customer_name or f"Customer {secrets.token_hex(3)}",
        payment_method=PaymentMethod.ACCOUNT_BALANCE,
    )
    with lifted_caps(size) if size > catalogue.MAX_VOUCHERS else contextlib.nullcontext():
        order = await place_order(
            actor=actor,
            request=request,
            gateway=SandboxGateway(),
            cipher=cipher,
            public_url=PUBLIC_URL,
            bus=KeptEvents(),
        )
    return int(order.id)


async def order_of(name: str, size: int, code_key: bytes) -> int:
    """A partner of its own, funded for it, and one order of `size` vouchers (SHAPES[0]); the order's id."""
    lines = lines_for(size, SHAPES[0])
    actor = await partner(name, funds=await cost(lines))
    return await place(actor, lines, codes.CodeCipher(code_key))


async def seed(plan: SeedPlan, code_key: bytes, *, concurrency: int = 3, rng_seed: int = 20261122) -> Seeded:
    """The data set of `plan`; needs the database open with a pool of at least `concurrency` + 2."""
    started = time.perf_counter()
    rng = random.Random(rng_seed)
    sizes = order_sizes(plan, rng)
    shapes = [rng.choice(SHAPES) for _ in sizes]
    owners = [0] + [rng.randrange(plan.accounts) for _ in sizes[1:]]
    products = {p.code: p for p in await Product.filter(active=True)}
    costs = [0] * plan.accounts
    for size, shape, owner in zip(sizes, shapes, owners, strict=True):
        product = products[shape[0]]
        unit = catalogue.unit_price(product, validity_years=shape[1], fqdns=shape[2], wildcards=0)
        costs[owner] += unit * size
    partners = await asyncio.gather(*(partner(f"Bench Partner {i + 1}", funds=cost) for i, cost in enumerate(costs)))
    cipher = codes.CodeCipher(code_key)
    # The largest order alone first (it is the one W4 exports), then the rest a few at a time:
    # one order seals its codes in Python while another's COPY runs in the server.
    largest = await place(partners[0], lines_for(sizes[0], shapes[0]), cipher)
    queue = list(zip(sizes[1:], shapes[1:], owners[1:], strict=True))
    order_ids = [largest]

    async def feeder() -> None:
        while queue:
            size, shape, owner = queue.pop()
            order_ids.append(await place(partners[owner], lines_for(size, shape), cipher))

    await asyncio.gather(*(feeder() for _ in range(concurrency)))
    await quiet_outbox()
    return Seeded(list(partners), largest, order_ids, sum(sizes), time.perf_counter() - started)


async def quiet_outbox() -> int:
    """Mark the pending outbox rows (e-mails, PDF renders) done: background work is no workload's subject.

    A worker a workload starts on this database would otherwise render the PDF of every seeded order.
    """
    conn = connections.get("default")
    pending = (OutboxStatus.PENDING.value, OutboxStatus.ENQUEUED.value)
    result = await conn.execute_query(
        "UPDATE outbox_message SET status = $1, done_at = now() WHERE status = ANY($2::text[])",
        [OutboxStatus.DONE.value, pending],
    )
    return int(result[0])


async def trusted(*documents: str) -> None:
    """Store documents as trusted (sent by id: `documentId`), as `vouchsafe documents load` does."""
    from services import trusted_documents

    manifest = {trusted_documents.document_hash(text): text for text in documents}
    await trusted_documents.load_manifest(trusted_documents.parse_manifest(manifest), source="manifest:bench")
