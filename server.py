"""The composition root: builds the Starlette app from its parts.

The lifespan builds the process's resources (database, Redis, the live hub, the
embedded worker when there is no Redis) and hands them to the GraphQL context;
nothing below it reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from infra import database, metrics, tracing
from infra.event_bus import RedisEventBus
from infra.live import Hub
from infra.ratelimit import RateLimiter
from infra.redis import ArqQueue, open_redis
from models import ORM_APPS
from schema.context import AppResources
from services import events, health, payments
from services.codes import CodeCipher
from settings import Settings, load_settings
from web import console, downloads, observe, operations, redeem
from web import graphql as graphql_endpoint
from workers.relay import relay_forever

log = logging.getLogger("vouchsafe.server")
SHUTDOWN_SECONDS = 5.0

# The pool's gauges are sampled this often in every process (a scrape reads them from any one).
POOL_SAMPLE_SECONDS = 1.0


@dataclass
class Running:
    """What the lifespan started and must stop: its tasks, the embedded worker."""

    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    worker: Any = None
    worker_task: asyncio.Task[Any] | None = None


async def open_resources(settings: Settings) -> AppResources:
    """The process's database pool, Redis client, event bus, limiter, gateway, cipher and live hub."""
    if settings.uses_sqlite:
        await database.migrate(settings.database_url, apps=ORM_APPS)
    await database.open_db(
        settings.database_url,
        pool_size=settings.db_pool_size,
        apps=ORM_APPS,
        statement_timeout=settings.db_statement_timeout_seconds,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    redis = await open_redis(
        settings.redis_url, queue_name=settings.queue_name, command_timeout=settings.redis_timeout_seconds
    )
    bus = RedisEventBus(redis, settings.queue_name, events.encode)
    return AppResources(
        settings=settings,
        redis=redis,
        limiter=RateLimiter(redis, namespace=settings.queue_name),
        gateway=payments.gateway_for(settings.payment_gateway),
        cipher=CodeCipher(settings.code_key),
        bus=bus,
        hub=Hub(redis, bus.channel, events.decode),
    )


def start_background(resources: AppResources, *, worker: bool = True) -> Running:
    """The outbox relay, the live hub's subscription and, without Redis and unless told not, the in-process worker."""
    settings, redis = resources.settings, resources.redis
    running = Running()
    running.tasks += [
        asyncio.create_task(relay_forever(ArqQueue(redis), interval=settings.outbox_sweep_seconds)),
        asyncio.create_task(resources.hub.run()),
        asyncio.create_task(health.sample_pool_forever(POOL_SAMPLE_SECONDS)),
    ]
    if settings.embedded_redis and worker:
        # Imported here: the worker loads the PDF toolkit, which API instances on Redis never need.
        from workers.worker import embedded_worker

        running.worker = embedded_worker(settings, redis)
        running.worker_task = asyncio.create_task(running.worker.main())
    log.info(
        "vouchsafe ready: database=%s redis=%s worker=%s",
        "sqlite" if settings.uses_sqlite else "postgres",
        "in-process" if settings.embedded_redis else "redis",
        "in-process" if running.worker else "separate",
    )
    return running


async def stop_background(resources: AppResources, running: Running) -> None:
    if running.worker is not None and running.worker_task is not None:
        await running.worker.finish(running.worker_task)
    resources.hub.stop()
    for task in running.tasks:
        task.cancel()
    if running.tasks:
        # Bounded like every other wait: a task stuck on a dependency must not hold the shutdown.
        _, stuck = await asyncio.wait(running.tasks, timeout=SHUTDOWN_SECONDS)
        for task in stuck:
            log.warning("background task %s did not stop within %ss; left behind", task.get_coro(), SHUTDOWN_SECONDS)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(resources.redis.aclose(), SHUTDOWN_SECONDS)
    await database.close_db()  # Tortoise bounds it (10 s, then the pool is terminated)
    metrics.process_exiting()


def create_app(settings: Settings | None = None, *, worker: bool = True) -> Starlette:
    """The app; `worker=False` runs no worker in-process even without Redis (tests run jobs in burst mode)."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if tracing.wanted() and not tracing.enabled:
            tracing.setup("vouchsafe-api")
        metrics.forget_dead_processes()
        resources = await open_resources(settings)
        app.state.resources = resources
        running = start_background(resources, worker=worker)
        # What start-up built (the schema, modules, pools) lives as long as the process: out of
        # the collector's sight, a full collection scans only what requests made since (full
        # collections had stalled every request in flight; bench/README.md, W3).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await stop_background(resources, running)

    middleware = [Middleware(observe.Observe)]
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                expose_headers=["X-Request-Id"],
            )
        )
    routes = [
        *graphql_endpoint.routes(settings),
        *downloads.routes,
        *operations.routes,
        *redeem.routes,
        *console.routes,
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
