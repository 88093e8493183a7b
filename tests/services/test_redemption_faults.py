"""A redemption whose rate-limit forgiving fails (Redis gone after the attempt) still stands."""

from __future__ import annotations

from collections.abc import Sequence

import fakeredis
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.ratelimit import Limit, RateLimiter
from models import CertificateRequest, CertificateRequestStatus, Voucher, VoucherStatus
from services import redemption
from services.codes import CodeCipher
from services.events import KeptEvents
from settings import Settings
from tests.support.orders import codes, partner, placed


class RedisGoneAfterTheAttempt(RateLimiter):
    """Counts attempts in a real (in-process) Redis; the forgiving after them fails, as when Redis dies."""

    async def forgive_all(self, subjects: Sequence[tuple[Limit, str]]) -> None:
        raise RedisConnectionError("Connection closed by server.")


async def test_a_used_voucher_is_not_reported_as_an_error_when_forgiving_fails(settings: Settings, db: None) -> None:
    # given: a partner's order of one voucher, and a limiter whose Redis fails after the attempt
    actor = await partner(settings)
    order = await placed(settings, actor)
    [code, *_] = await codes(settings, actor, order)
    limiter = RedisGoneAfterTheAttempt(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), namespace="t")
    request = redemption.RequestInput(
        code=code.code, common_name="www.example.com", additional_fqdns=[], wildcards=[], csr=None
    )
    # when: the customer redeems it
    created = await redemption.redeem(
        actor=actor,
        request=request,
        cipher=CodeCipher(settings.code_key),
        client="203.0.113.7",
        limiter=limiter,
        bus=KeptEvents(),
    )
    # then: the request is made and the voucher used, once; the customer is told so
    assert created.status == CertificateRequestStatus.SUBMITTED
    voucher = await Voucher.get(id=created.voucher_id)
    assert (voucher.status, voucher.order_id) == (VoucherStatus.VALID_USED, order.id)
    assert await CertificateRequest.filter(voucher_id=voucher.id).count() == 1
