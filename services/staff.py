"""What only the operator's staff do: create staff, enable the voucher feature."""

from __future__ import annotations

import asyncio

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from infra.security import hash_password
from models import Account, User
from services import events
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.events import EventBus
from services.validation import check_length, check_password, clean_email


async def create_staff(*, email: str, password: str) -> User:
    """A staff user (command line only): belongs to no account."""
    email = clean_email(email)
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        return await User.create(email=email, password_hash=password_hash, is_staff=True, role=None)
    except IntegrityError as exc:
        raise DomainError(ErrorCode.EMAIL_TAKEN, "A user with this e-mail already exists.", "email") from exc


async def find_account(reference: str) -> Account:
    """An account by id, or by the e-mail of one of its users (for the command line)."""
    if reference.isdigit():
        account = await Account.filter(id=int(reference)).first()
    else:
        user = await User.filter(email=reference.strip().lower(), is_staff=False).first()
        account = await Account.filter(id=user.account_id).first() if user else None
    if account is None:
        raise not_found("account_id", "No such account.")
    return account


async def set_partner(*, account_id: int, enabled: bool, bus: EventBus, actor: Actor | None = None) -> Account:
    """Enable or disable the voucher feature for an account (staff, or the command line when actor is None)."""
    if actor is not None:
        actor.require_staff()
    changed = await Account.filter(id=account_id).update(is_partner=enabled)
    if not changed:
        raise not_found("account_id", "No such account.")
    await events.publish(bus, [events.account_changed(account_id, "PARTNER")])
    return await Account.get(id=account_id)


SEARCH_MAX = 200


def accounts_matching(*, actor: Actor, search: str | None) -> QuerySet[Account]:
    """Staff: every account, or those whose name or a user's e-mail contains `search` (any case).

    One statement whatever matches: the e-mail test is a subquery, not a join that repeats accounts.
    """
    actor.require_staff()
    query = Account.all()
    term = check_length(search or "", field="search", max_length=SEARCH_MAX).strip()
    if term:
        emails = User.filter(email__icontains=term, is_staff=False).values("account_id")
        query = query.filter(Q(name__icontains=term) | Q(id__in=Subquery(emails)))
    return query
