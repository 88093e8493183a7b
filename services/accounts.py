"""Accounts, users, sign-in sessions and API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from infra import clock
from infra.ratelimit import Limit, RateLimiter
from infra.security import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from models import Account, ApiKey, ApiKeyChannel, FinanceSettings, Role, Session, User
from services import events, outbox
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.events import EventBus
from services.limits import count_attempt
from services.mail import SEND_EMAIL, email_payload
from services.validation import (
    EMAIL_MAX,
    PASSWORD_MAX,
    all_valid,
    check_length,
    check_password,
    clean_email,
    clean_locale,
    clean_text,
)

SESSION_LIFETIME = timedelta(days=14)
SIGN_IN_PER_EMAIL = Limit("signin:email", 10, 15 * 60)
SIGN_IN_PER_CLIENT = Limit("signin:client", 30, 15 * 60)


@dataclass(frozen=True)
class SignedIn:
    token: str
    user: User
    expires_at: datetime


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str


async def sign_up(*, email: str, password: str, account_name: str, locale: str | None, public_url: str) -> User:
    """Create an account and its first ADMIN user; a welcome e-mail goes out after commit.

    Every invalid field is reported at once (InvalidFields), not the first one only.
    """
    email, _, name, locale = all_valid(
        lambda: clean_email(email),
        lambda: check_password(password),
        lambda: clean_text(account_name, field="account_name", max_length=200),
        lambda: clean_locale(locale),
    )
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        async with in_transaction() as conn:
            account = await Account.create(name=name, locale=locale, using_db=conn)
            await FinanceSettings.create(account=account, using_db=conn)
            user = await User.create(
                account=account, email=email, password_hash=password_hash, role=Role.ADMIN, using_db=conn
            )
            await outbox.add(
                SEND_EMAIL,
                email_payload(
                    "welcome",
                    to=[email],
                    locale=locale,
                    context={"account_name": name, "email": email, "public_url": public_url},
                ),
                using_db=conn,
            )
    except IntegrityError as exc:
        if await User.filter(email=email).exists():
            raise DomainError(ErrorCode.EMAIL_TAKEN, "An account with this e-mail already exists.", "email") from exc
        raise
    outbox.notify()
    return user


async def sign_in(*, email: str, password: str, client: str, limiter: RateLimiter) -> SignedIn:
    """A new session for valid credentials; failures are rate-limited per e-mail and per client."""
    email = check_length(email.strip().lower(), field="email", max_length=EMAIL_MAX)
    check_length(password, field="password", max_length=PASSWORD_MAX)
    await count_attempt(limiter, [(SIGN_IN_PER_CLIENT, client)])
    await count_attempt(limiter, [(SIGN_IN_PER_EMAIL, email)])
    user = await User.filter(email=email, is_active=True).first()
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    if user is None or not ok:
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, "E-mail or password is wrong.")
    await limiter.forgive(SIGN_IN_PER_CLIENT, client)
    await limiter.forgive(SIGN_IN_PER_EMAIL, email)
    token = new_token(SESSION_PREFIX)
    expires_at = clock.now() + SESSION_LIFETIME
    await Session.create(user=user, token_hash=token_digest(token), expires_at=expires_at)
    return SignedIn(token=token, user=user, expires_at=expires_at)


async def sign_out(*, actor: Actor) -> None:
    """Revoke the session the request came with."""
    if actor.session_id is None:
        raise DomainError(ErrorCode.INVALID, "Only a sign-in session can be signed out; revoke API keys instead.")
    await Session.filter(id=actor.session_id, revoked_at=None).update(revoked_at=clock.now())


async def user_create(*, actor: Actor, email: str, password: str, role: Role) -> User:
    """An ADMIN adds a user of any role to its own account."""
    actor.require_role(Role.ADMIN)
    account_id = actor.require_account()
    email = clean_email(email)
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        return await User.create(account_id=account_id, email=email, password_hash=password_hash, role=role)
    except IntegrityError as exc:
        raise DomainError(ErrorCode.EMAIL_TAKEN, "A user with this e-mail already exists.", "email") from exc


async def api_key_create(*, actor: Actor, name: str, channel: ApiKeyChannel) -> CreatedApiKey:
    """An ADMIN creates an API key; its secret is returned this once and stored only hashed."""
    actor.require_role(Role.ADMIN)
    account_id = actor.require_account()
    name = clean_text(name, field="name", max_length=100)
    secret = new_token(API_KEY_PREFIX)
    key = await ApiKey.create(
        account_id=account_id,
        name=name,
        channel=channel,
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        key_hash=token_digest(secret),
        created_by_id=actor.user_id,
    )
    return CreatedApiKey(api_key=key, secret=secret)


async def api_key_revoke(*, actor: Actor, api_key_id: int) -> ApiKey:
    """An ADMIN revokes one of its account's keys; another tenant's key is NOT_FOUND."""
    actor.require_role(Role.ADMIN)
    account_id = actor.require_account()
    await ApiKey.filter(account_id=account_id, id=api_key_id, revoked_at=None).update(revoked_at=clock.now())
    key = await ApiKey.filter(account_id=account_id, id=api_key_id).first()
    if key is None:
        raise not_found("id", "No such API key.")
    return key


async def account_update(*, actor: Actor, name: str | None, locale: str | None, bus: EventBus) -> Account:
    """An ADMIN renames the account or changes its locale (documents, e-mails, the console's language)."""
    actor.require_role(Role.ADMIN)
    account_id = actor.require_account()
    checks: dict[str, Callable[[], str]] = {}
    if name is not None:
        checks["name"] = lambda: clean_text(name, field="name", max_length=200)
    if locale is not None:
        checks["locale"] = lambda: clean_locale(locale)
    changes = dict(zip(checks, all_valid(*checks.values()), strict=True))
    if changes:
        await Account.filter(id=account_id).update(**changes)
        await events.publish(bus, [events.account_changed(account_id, "SETTINGS")])
    return await Account.get(id=account_id)
