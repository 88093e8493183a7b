"""Coarse permissions. Ownership is not checked here: queries are scoped to the tenant."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from schema.context import Info
from schema.errors import ClientError
from services.actors import Actor

BAD_TOKEN = "This token is unknown, expired or revoked: sign in again, or use a valid API key."


def unauthenticated(info: Info) -> ClientError:
    """Not signed in, or signed in with a token that no longer stands for anyone: the client is told which."""
    message = BAD_TOKEN if info.context.token else IsAuthenticated.message
    return ClientError(message, code="UNAUTHENTICATED")


def refuse_a_dead_token(info: Info) -> None:
    """A token that stands for nobody (signed out, expired) is told so rather than read as anonymous."""
    if info.context.actor is None and info.context.token:
        raise unauthenticated(info)


class IsAuthenticated(BasePermission):
    message = "Sign in first: send Authorization: Bearer <token>."
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        refuse_a_dead_token(info)
        return info.context.actor is not None

    def on_unauthorized(self) -> None:
        raise ClientError(self.message, code="UNAUTHENTICATED")


def actor_of(info: Info) -> Actor:
    """The signed-in actor of a field guarded by IsAuthenticated."""
    actor = info.context.actor
    if actor is None:
        raise unauthenticated(info)
    return actor
