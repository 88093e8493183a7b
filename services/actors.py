"""Who is asking: resolved once per request from the bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import connections

from infra import clock
from infra.security import API_KEY_PREFIX, SESSION_PREFIX, token_digest
from infra.sql import Sql
from models import ApiKeyChannel, Role
from services.errors import DomainError, ErrorCode


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
    # Every request comes here first: one hand-written statement (the session joined to its
    # user), no query built by the ORM (pypika's cost: bench/README.md, W3) and no model instances.
    digest = token_digest(token)
    conn = connections.get("default")
    sql = Sql(conn)
    if token.startswith(SESSION_PREFIX):
        query = (
            "SELECT s.id, s.user_id, u.account_id, u.role, u.is_staff FROM user_session s"
            f" JOIN app_user u ON u.id = s.user_id WHERE s.token_hash = {sql.param(digest)}"
            f" AND s.revoked_at IS NULL AND s.expires_at > {sql.param(clock.now())} AND u.is_active"
        )
        _, rows = await conn.execute_query(query, sql.values)
        if not rows:
            return None
        session = rows[0]
        return Actor(
            user_id=int(session["user_id"]),
            account_id=session["account_id"],
            role=Role(session["role"]) if session["role"] is not None else None,
            is_staff=bool(session["is_staff"]),
            session_id=int(session["id"]),
        )
    if token.startswith(API_KEY_PREFIX):
        query = (
            f"SELECT id, account_id, channel FROM api_key WHERE key_hash = {sql.param(digest)} AND revoked_at IS NULL"
        )
        _, rows = await conn.execute_query(query, sql.values)
        if not rows:
            return None
        key = rows[0]
        return Actor(
            user_id=None,
            account_id=int(key["account_id"]),
            role=API_KEY_ROLE,
            api_key_id=int(key["id"]),
            channel=ApiKeyChannel(key["channel"]),
        )
    return None
