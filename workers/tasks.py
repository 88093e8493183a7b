"""arq tasks. Each loads its state again by id and is harmless when delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from arq import Retry
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from infra import response_cache, tracing
from infra.database import close_db, open_db
from infra.event_bus import RedisEventBus
from infra.redis import ArqQueue
from models import ORM_APPS
from services import events, expiry, health, idempotency, outbox, pdf
from services.codes import CodeCipher
from services.events import EventBus
from services.mail import SEND_EMAIL, mailer_for, send_email_handler
from services.webhook_delivery import DeliveryConfig, Outcome
from services.webhook_http import HttpSender
from services.webhook_secrets import SecretCipher
from services.webhook_urls import SystemResolver
from settings import Settings
from workers.health import Endpoint
from workers.relay import relay_forever
from workers.webhooks import Dispatcher

log = logging.getLogger(__name__)

Job = TypeVar("Job", bound=Callable[..., Awaitable[Any]])

POOL_SAMPLE_SECONDS = 1.0
# A job that could not reach the database or Redis (its claim, or recording its outcome) tries again soon.
UNREACHABLE_RETRY_SECONDS = 5
# A delivery's outcome retires its account's cached answers (their deliveries list), best effort.
CACHE_BUMP_TIMEOUT_SECONDS = 2.0


# arq's in-progress mark of a job outlives the outbox lease by this much (arq's own margin over its timeout).
IN_PROGRESS_MARGIN_SECONDS = 10.0


def in_progress_seconds(settings: Settings) -> float:
    """How long arq's mark that a job runs lasts unless renewed: a killed worker's job is taken after this."""
    return settings.job_lease_seconds + IN_PROGRESS_MARGIN_SECONDS


async def run_outbox(ctx: dict[str, Any], message_id: int) -> str:
    settings: Settings = ctx["settings"]
    try:
        outcome = await outbox.run(
            message_id,
            ctx["handlers"],
            failure_hooks=ctx.get("failure_hooks"),
            lease=timedelta(seconds=settings.job_lease_seconds),
        )
    except Exception as exc:
        # outbox.run records a handler's failure itself; what escapes is the database failing under
        # it. arq re-runs only a Retry, so this is one: the row is never left without a job.
        log.warning("outbox message %s not run (%s: %s); retrying", message_id, type(exc).__name__, exc)
        raise Retry(defer=UNREACHABLE_RETRY_SECONDS) from exc
    if outcome is outbox.Outcome.RETRY:
        raise Retry(defer=outbox.retry_delay(ctx["job_try"]))
    if outcome is outbox.Outcome.BUSY:
        # Another delivery holds the lease; come back once it would have lapsed, in case it died holding it.
        raise Retry(defer=math.ceil(settings.job_lease_seconds))
    return outcome.value


def kept_in_progress(job: Job) -> Job:
    """The job, renewing arq's in-progress mark while it runs (its heartbeat): a dead worker's job is free soon."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        beat = asyncio.create_task(_keep_in_progress(ctx))
        try:
            return await job(ctx, *args, **kwargs)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    return cast(Job, run)


async def _keep_in_progress(ctx: dict[str, Any]) -> None:
    redis: Redis | None = ctx.get("redis")
    job_id: str | None = ctx.get("job_id")
    settings: Settings | None = ctx.get("settings")
    if redis is None or job_id is None or settings is None:
        return
    interval = settings.job_lease_seconds / 3
    milliseconds = int(in_progress_seconds(settings) * 1000)
    while True:
        await asyncio.sleep(interval)
        try:
            async with asyncio.timeout(interval):
                await redis.pexpire(in_progress_key_prefix + job_id, milliseconds)
        except Exception as exc:  # Redis slow or gone: the next beat tries again
            log.warning("job %s: in-progress mark not renewed (%s)", job_id, type(exc).__name__)


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Keys are kept at least 24 hours, then purged."""
    return await idempotency.purge_expired()


async def expire_vouchers(ctx: dict[str, Any]) -> int:
    """Vouchers past their expiry read EXPIRED at once; this stores it, in short batches."""
    return await expiry.expire_due(bus=ctx["event_bus"])


async def remind_expiring_orders(ctx: dict[str, Any]) -> int:
    """Once per order, 30 days before its unused vouchers expire."""
    settings: Settings = ctx["settings"]
    return await expiry.send_expiry_reminders(public_url=settings.public_url)


def handlers(settings: Settings, bus: EventBus) -> dict[str, outbox.Handler]:
    """Outbox task name -> the service that does the work."""
    return {
        SEND_EMAIL: send_email_handler(mailer_for(settings.smtp_url, settings.mail_dir), settings.mail_from),
        **pdf.pdf_handlers(cipher=CodeCipher(settings.code_key), public_url=settings.public_url, bus=bus),
    }


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    if not ctx.get("embedded"):
        if tracing.wanted() and not tracing.enabled:
            tracing.setup("vouchsafe-worker")
        await open_db(
            settings.database_url,
            apps=ORM_APPS,
            pool_size=settings.db_pool_size,
            statement_timeout=settings.db_statement_timeout_seconds,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        ctx["relay"] = asyncio.create_task(
            relay_forever(ArqQueue(ctx["redis"]), interval=settings.outbox_sweep_seconds)
        )
        ctx["pool_sampler"] = asyncio.create_task(health.sample_pool_forever(POOL_SAMPLE_SECONDS))
        if settings.worker_metrics_port:
            ctx["endpoint"] = Endpoint(
                ctx["redis"], settings.queue_name, host=settings.worker_metrics_host, port=settings.worker_metrics_port
            )
            ctx["endpoint"].start()
    # A worker's changes (PDF ready, vouchers expired) reach the API processes' subscribers.
    ctx["event_bus"] = RedisEventBus(ctx["redis"], settings.queue_name, events.encode)
    ctx["handlers"] = handlers(settings, ctx["event_bus"])
    ctx["failure_hooks"] = pdf.pdf_failure_hooks(bus=ctx["event_bus"])
    ctx["webhooks"], ctx["webhooks_task"] = start_webhooks(settings, ctx["redis"])


def start_webhooks(settings: Settings, redis: Redis) -> tuple[Dispatcher, asyncio.Task[None]]:
    """The process's webhook dispatcher (workers.webhooks), beside the job queue."""
    dispatcher = webhook_dispatcher(settings, redis)
    return dispatcher, asyncio.create_task(dispatcher.run_forever())


def webhook_dispatcher(settings: Settings, redis: Redis) -> Dispatcher:
    """A dispatcher as a worker sets it up, not yet running (tests drive it: `drain`)."""
    config = DeliveryConfig(
        cipher=SecretCipher(settings.secret_key),
        sender=HttpSender(),
        resolver=SystemResolver(),
        allow_insecure=settings.webhooks_allow_insecure,
        public_url=settings.public_url,
    )

    async def settled(outcome: Outcome) -> None:
        async with asyncio.timeout(CACHE_BUMP_TIMEOUT_SECONDS):
            await response_cache.invalidate(redis, settings.queue_name, [outcome.account_id])

    return Dispatcher(config, on_outcome=settled)


async def shutdown(ctx: dict[str, Any]) -> None:
    endpoint: Endpoint | None = ctx.pop("endpoint", None)
    if endpoint is not None:
        await endpoint.stop()
    sampler: asyncio.Task[None] | None = ctx.pop("pool_sampler", None)
    if sampler is not None:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    webhooks_task: asyncio.Task[None] | None = ctx.pop("webhooks_task", None)
    if webhooks_task is not None:
        dispatcher: Dispatcher = ctx.pop("webhooks")
        await dispatcher.stop(webhooks_task)
        await dispatcher.config.sender.aclose()
    relay = ctx.pop("relay", None)
    if relay is not None:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
    if not ctx.get("embedded"):
        await close_db()
