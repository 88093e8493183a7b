"""Trusted (persisted) GraphQL documents: the operations the project's clients ship, by their hash."""

from tortoise import fields
from tortoise.models import Model


class TrustedDocument(Model):
    """One GraphQL document, keyed by the sha256 (lower-case hex) of its exact UTF-8 text."""

    hash = fields.CharField(max_length=64, primary_key=True)
    text = fields.TextField()
    # A manifest's own id when it is not the sha256 (Relay writes an md5, apps their own names).
    client_id = fields.CharField(max_length=200, null=True, unique=True)
    # Where it came from: `manifest:<file name>` or `apq` (registered by a client in development).
    source = fields.CharField(max_length=200)
    created_at = fields.DatetimeField()

    class Meta:
        table = "trusted_document"
