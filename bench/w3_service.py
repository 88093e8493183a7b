"""W3's data and its service comparison: A `services.redemption.redeem`, B raw asyncpg, from 32 tasks.

Seeding: one partner funded for every code places one order per client (and one for the
contention check) through the services; the codes are decrypted back from the database,
as the CSV export does. Redeemers are signed-up accounts with session tokens, 8 clients to
an account (the rate limit allows 10 lookups in flight per account).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import seed as seeding
from bench.stores import asyncpg_dsn
from bench.w3_load import COMMON_NAME, Tally, client_address
from infra.ratelimit import RateLimiter
from models import Voucher
from services import codes, redemption
from services.actors import Actor
from services.catalogue import LineRequest
from services.errors import DomainError
from services.events import KeptEvents

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


def _lines(quantity: int) -> list[LineRequest]:
    return [LineRequest("BASIC_OV", quantity=quantity, validity_years=1, fqdns=1, wildcards=0)]


async def seed(
    *, code_key: bytes, redis: Any, namespace: str, clients: int, codes_per_client: int, contention_codes: int
) -> Fixture:
    cipher, limiter = codes.CodeCipher(code_key), RateLimiter(redis, namespace=namespace)
    funds = await seeding.cost(_lines(1), clients * codes_per_client + contention_codes)
    partner = await seeding.partner("W3 Partner", funds=funds)
    # Concurrently: sign-up and sign-in hash passwords (argon2) in threads.
    accounts_needed = math.ceil(clients / CLIENTS_PER_ACCOUNT)
    redeemers = await asyncio.gather(*(seeding.customer(f"W3 Customer {n}", limiter) for n in range(accounts_needed)))

    async def order_codes(quantity: int) -> list[str]:
        order_id = await seeding.place(partner, _lines(quantity), cipher)
        rows = await Voucher.filter(order_id=order_id).values_list("code_ciphertext", "code_digest")
        return [codes.display(cipher.open(bytes(c), bytes(d))) for c, d in rows]

    pools = [await order_codes(codes_per_client) for _ in range(clients)]
    contention = await order_codes(contention_codes)
    await seeding.quiet_outbox()  # the seeding's e-mails and PDF jobs: nobody wants them done
    owners = [redeemers[i // CLIENTS_PER_ACCOUNT] for i in range(clients)]
    return Fixture(
        cipher=cipher,
        limiter=limiter,
        client_actors=[r.actor for r in owners],
        client_tokens=[r.token for r in owners],
        pools=pools,
        contention_codes=contention,
        contender_tokens=[redeemers[i % accounts_needed].token for i in range(CONTENDERS)],
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
            actor=fx.client_actors[i],
            request=request,
            cipher=fx.cipher,
            client=client_address(i),
            limiter=fx.limiter,
            bus=KeptEvents(),
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
