"""W3's data and its service-level rounds: seeding through the services, redeem vs raw asyncpg.

Seeding: one partner funds its balance and places one order per client (and one for
the contention check) through `services.orders.place_order`; the codes are decrypted
back from the database, as the CSV export does. Redeemers are signed-up accounts with
session tokens (`services.accounts`), 8 clients to an account.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from tortoise.transactions import in_transaction

from bench.postgres import asyncpg_dsn
from bench.w3_http import COMMON_NAME, Tally, client_address
from infra.ratelimit import RateLimiter
from models import LedgerEntryKind, OutboxMessage, PaymentMethod, Role, Voucher
from services import accounts, catalogue, codes, finance, redemption, staff
from services.actors import Actor, authenticate
from services.catalogue import LineRequest
from services.errors import DomainError
from services.ledger import post_entry
from services.orders import OrderRequest, place_order
from services.payments import SandboxGateway

PUBLIC_URL = "http://127.0.0.1:8000"
PRODUCT = "BASIC_OV"
# The rate limit allows 10 lookups in flight per account: 8 clients share one.
CLIENTS_PER_ACCOUNT = 8
CONTENDERS = 8  # clients redeeming the same code at once in the contention check


@dataclass
class Fixture:
    cipher: codes.CodeCipher
    limiter: RateLimiter
    client_actors: list[Actor]
    client_tokens: list[str]
    pools: list[list[str]]  # per client: unused codes of its own order
    contention_codes: list[str]
    contender_tokens: list[str]
    taken: list[str] = field(default_factory=list)  # every code handed to a round

    def take(self, per_client: int) -> list[list[str]]:
        """The next `per_client` fresh codes of every client."""
        batches = []
        for pool in self.pools:
            if len(pool) < per_client:
                raise RuntimeError("w3: out of fresh codes (Sizes.codes_per_client is wrong)")
            batches.append(pool[-per_client:])
            del pool[-per_client:]
        self.taken.extend(code for batch in batches for code in batch)
        return batches

    def take_contention(self, count: int) -> list[str]:
        taken, self.contention_codes = self.contention_codes[:count], self.contention_codes[count:]
        self.taken.extend(taken)
        return taken


def _order(quantity: int) -> OrderRequest:
    line = LineRequest(PRODUCT, quantity=quantity, validity_years=1, fqdns=1, wildcards=0)
    return OrderRequest(lines=[line], payment_method=PaymentMethod.ACCOUNT_BALANCE)


async def _redeemer(number: int, limiter: RateLimiter) -> str:
    """A signed-up account (not a partner) and a session token of its user."""
    email, password = f"w3-redeemer-{number}-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(15)
    await accounts.sign_up(
        email=email, password=password, account_name=f"W3 Customer {number}", locale="en", public_url=PUBLIC_URL
    )
    signed_in = await accounts.sign_in(email=email, password=password, client="w3-seed", limiter=limiter)
    return signed_in.token


async def seed(
    *, code_key: bytes, redis: Any, namespace: str, clients: int, codes_per_client: int, contention_codes: int
) -> Fixture:
    cipher, limiter = codes.CodeCipher(code_key), RateLimiter(redis, namespace=namespace)
    outbox_mark = await OutboxMessage.all().order_by("-id").first()
    user = await accounts.sign_up(
        email=f"w3-partner-{secrets.token_hex(4)}@example.com",
        password=secrets.token_urlsafe(15),
        account_name="W3 Partner",
        locale="en",
        public_url=PUBLIC_URL,
    )
    partner = Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)
    account_id = partner.require_account()
    await staff.set_partner(account_id=account_id, enabled=True)
    await finance.update_settings(actor=partner, bill_to_balance_enabled=True)
    unit = (await catalogue.quote(_order(1).lines, currency="USD")).total
    async with in_transaction() as conn:
        amount = unit * (clients * codes_per_client + contention_codes)
        await post_entry(conn, account_id=account_id, kind=LedgerEntryKind.DEPOSIT, amount=amount)
    accounts_needed = math.ceil(clients / CLIENTS_PER_ACCOUNT)
    # Concurrently: sign-up and sign-in hash passwords (argon2) in threads.
    tokens = await asyncio.gather(*(_redeemer(n, limiter) for n in range(accounts_needed)))
    actors = [await authenticate(token) for token in tokens]

    async def order_codes(quantity: int) -> list[str]:
        order = await place_order(
            actor=partner, request=_order(quantity), gateway=SandboxGateway(), cipher=cipher, public_url=PUBLIC_URL
        )
        rows = await Voucher.filter(order_id=order.id).values_list("code_ciphertext", "code_digest")
        return [codes.display(cipher.open(bytes(c), bytes(d))) for c, d in rows]

    pools = [await order_codes(codes_per_client) for _ in range(clients)]
    contention = await order_codes(contention_codes)
    # The seeding's welcome e-mails, order e-mails and PDF jobs: nobody wants them done.
    await OutboxMessage.filter(id__gt=outbox_mark.id if outbox_mark else 0).delete()
    client_actors = [actors[i // CLIENTS_PER_ACCOUNT] for i in range(clients)]
    if any(actor is None for actor in client_actors):
        raise RuntimeError("w3: a fresh session token did not authenticate")
    return Fixture(
        cipher=cipher,
        limiter=limiter,
        client_actors=[a for a in client_actors if a is not None],
        client_tokens=[tokens[i // CLIENTS_PER_ACCOUNT] for i in range(clients)],
        pools=pools,
        contention_codes=contention,
        contender_tokens=[tokens[i % accounts_needed] for i in range(CONTENDERS)],
    )


async def _all_clients(batches: list[list[str]], one: Callable[[int, str], Any], tally: Tally) -> float:
    """Every client works through its batch one code after another, all clients at once; redeems/s."""

    async def client(i: int, batch: list[str]) -> None:
        for code in batch:
            started = time.perf_counter()
            try:
                await one(i, code)
            except (DomainError, _Lost) as error:
                tally.failures.append(f"{type(error).__name__}: {error}")
            tally.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i, batch) for i, batch in enumerate(batches)))
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


async def service_round(fx: Fixture, batches: list[list[str]], tally: Tally) -> float:
    """A: the redemption service, as the resolver calls it."""

    async def one(i: int, code: str) -> None:
        request = redemption.RequestInput(
            code=code, common_name=COMMON_NAME, additional_fqdns=[], wildcards=[], csr=None
        )
        await redemption.redeem(
            actor=fx.client_actors[i], request=request, cipher=fx.cipher, client=client_address(i), limiter=fx.limiter
        )

    return await _all_clients(batches, one, tally)


class _Lost(Exception):
    """The baseline's compare-and-set changed no row."""


CAS = """UPDATE voucher SET status = 'VALID_USED', used_at = $2
WHERE code_digest = $1 AND status = 'VALID_UNUSED' AND expires_at > $2 RETURNING id"""
INSERT_REQUEST = """INSERT INTO certificate_request
(voucher_id, account_id, user_id, common_name, additional_fqdns, wildcards, status, created_at)
VALUES ($1, $2, $3, $4, '[]', '[]', 'SUBMITTED', $5)"""


async def baseline_round(pool: asyncpg.Pool, fx: Fixture, batches: list[list[str]], tally: Tally) -> float:
    """B: raw asyncpg: find the code by digest and use it by compare-and-set, insert the request; one transaction."""

    async def one(i: int, code: str) -> None:
        body = codes.normalize(code)
        assert body is not None
        digest, actor, now = fx.cipher.digest(body), fx.client_actors[i], datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            voucher_id = await conn.fetchval(CAS, digest, now)
            if voucher_id is None:
                raise _Lost(code[-5:])
            await conn.execute(INSERT_REQUEST, voucher_id, actor.account_id, actor.user_id, COMMON_NAME, now)

    return await _all_clients(batches, one, tally)


# One grouped pass over the requests (a count per voucher would scan them once a voucher:
# only live requests are indexed by voucher).
VERIFY = """WITH v AS (SELECT id, status FROM voucher WHERE code_digest = ANY($1::bytea[])),
r AS (SELECT voucher_id, count(*) AS n FROM certificate_request WHERE voucher_id IN (SELECT id FROM v) GROUP BY 1)
SELECT count(*) FROM v JOIN r ON r.voucher_id = v.id WHERE v.status = 'VALID_USED' AND r.n = 1"""


async def verify_exactly_once(db_url: str, fx: Fixture) -> tuple[int, int]:
    """(codes used exactly once: VALID_USED with one certificate request, codes handed to rounds)."""
    digests = [fx.cipher.digest(codes.normalize(code) or "") for code in fx.taken]
    conn = await asyncpg.connect(asyncpg_dsn(db_url), timeout=10)
    try:
        once = await conn.fetchval(VERIFY, digests)
    finally:
        await conn.close()
    return int(once), len(digests)
