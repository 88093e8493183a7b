"""Who is asking: resolved once per request from the bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from models import ApiKey, ApiKeyChannel, Role, Session
from services import clock
from services.errors import DomainError, ErrorCode
from services.security import API_KEY_PREFIX, SESSION_PREFIX, token_digest


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    account_id: int | None
    role: Role | None
    is_staff: bool = False
    api_key_id: int | None = None
    channel: ApiKeyChannel | None = None
    session_id: int | None = None

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    def has_role(self, *roles: Role) -> bool:
        return self.role in roles

    def require_role(self, *roles: Role) -> None:
        """Refuse unless the actor holds one of the roles."""
        if not self.has_role(*roles):
            raise DomainError(ErrorCode.PERMISSION_DENIED, "Your role does not allow this.")

    def require_account(self) -> int:
        if self.account_id is None:
            raise DomainError(ErrorCode.PERMISSION_DENIED, "This needs an account.")
        return self.account_id

    def require_staff(self) -> None:
        if not self.is_staff:
            raise DomainError(ErrorCode.PERMISSION_DENIED, "Only staff may do this.")


# API keys act for their account with FINANCE rights: they order, pay and read
# codes, but never manage users or keys.
API_KEY_ROLE = Role.FINANCE


async def authenticate(token: str) -> Actor | None:
    """The actor a bearer token stands for, or None when it is unknown, expired or revoked."""
    digest = token_digest(token)
    now = clock.now()
    if token.startswith(SESSION_PREFIX):
        # One statement (the session joined to its user), plain values: no model instances per request.
        session = (
            await Session.filter(token_hash=digest, revoked_at=None, expires_at__gt=now, user__is_active=True)
            .first()
            .values("id", "user_id", "user__account_id", "user__role", "user__is_staff")
        )
        if session is None:
            return None
        role = session["user__role"]
        return Actor(
            user_id=int(session["user_id"]),
            account_id=session["user__account_id"],
            role=Role(role) if role is not None else None,
            is_staff=bool(session["user__is_staff"]),
            session_id=int(session["id"]),
        )
    if token.startswith(API_KEY_PREFIX):
        key = await ApiKey.filter(key_hash=digest, revoked_at=None).first().values("id", "account_id", "channel")
        if key is None:
            return None
        return Actor(
            user_id=None,
            account_id=int(key["account_id"]),
            role=API_KEY_ROLE,
            api_key_id=int(key["id"]),
            channel=ApiKeyChannel(key["channel"]),
        )
    return None
