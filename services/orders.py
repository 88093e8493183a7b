"""Placing voucher orders: priced lines, up to 10,000 codes, paid by balance or by card.

Balance: the debit, the order, its lines, every voucher, the history and the
outbox rows commit in one transaction (INSUFFICIENT_FUNDS leaves nothing).
Card: the card is charged first, outside any transaction; if the order then
cannot be committed, the charge is refunded and the caller gets a clear error.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from infra import clock
from models import (
    Account,
    ApiKeyChannel,
    FinanceSettings,
    LedgerEntryKind,
    OrderEvent,
    OrderEventKind,
    PaymentMethod,
    Role,
    User,
    Voucher,
    VoucherOrder,
    VoucherOrderLine,
    VoucherStatus,
    WebhookEventType,
)
from services import catalogue, codes, events, idempotency, outbox, webhook_events
from services.actors import Actor
from services.card_payments import CardPayment, charge_then_commit
from services.catalogue import LineRequest, Quote
from services.errors import DomainError, ErrorCode
from services.events import EventBus
from services.ledger import finance_contacts, insufficient_funds, post_entry
from services.mail import SEND_EMAIL, email_payload
from services.money import to_decimal
from services.payments import Charge, PaymentGateway
from services.validation import clean_text, optional_text

log = logging.getLogger(__name__)

CUSTOMER_NAME_MAX = 200
NOTES_MAX = 2_000
ORDER_PLACED = "order_placed"
ORDER_OPERATION = "voucherOrderCreate"  # the idempotency records' operation
# The job services.pdf handles; named here so that placing an order does not load the PDF toolkit.
RENDER_PDF = "render_pdf"
_NUMBER_SYMBOLS = codes.CROCKFORD


@dataclass(frozen=True)
class OrderRequest:
    lines: list[LineRequest]
    customer_name: str | None = None
    notes: str | None = None
    payment_method: PaymentMethod | None = None
    card_token: str | None = None
    idempotency_key: str | None = None


def expiry_of(purchased: datetime) -> datetime:
    """One calendar year after purchase (29 February expires on 28 February)."""
    try:
        return purchased.replace(year=purchased.year + 1)
    except ValueError:
        return purchased.replace(year=purchased.year + 1, day=28)


def new_order_number(now: datetime) -> str:
    # Human-readable and unique: the date and 8 random symbols (40 bits), under a unique index.
    tail = "".join(secrets.choice(_NUMBER_SYMBOLS) for _ in range(8))
    return f"VO-{now:%y%m%d}-{tail[:4]}-{tail[4:]}"


async def _payment_method(actor: Actor, account_id: int, requested: PaymentMethod | None) -> PaymentMethod:
    settings = await FinanceSettings.get(account_id=account_id)
    if actor.channel == ApiKeyChannel.AZURE_KEY_VAULT:
        if requested == PaymentMethod.CREDIT_CARD:
            raise DomainError(
                ErrorCode.PAYMENT_METHOD_DISABLED, "Azure Key Vault keys pay by account balance only.", "payment_method"
            )
        requested = PaymentMethod.ACCOUNT_BALANCE
    method = requested or settings.default_payment_method
    enabled = {
        PaymentMethod.ACCOUNT_BALANCE: settings.bill_to_balance_enabled,
        PaymentMethod.CREDIT_CARD: settings.credit_card_enabled,
    }
    if not enabled[method]:
        raise DomainError(ErrorCode.PAYMENT_METHOD_DISABLED, "This payment method is not enabled.", "payment_method")
    return method


async def place_order(
    *,
    actor: Actor,
    request: OrderRequest,
    gateway: PaymentGateway,
    cipher: codes.CodeCipher,
    public_url: str,
    bus: EventBus,
) -> VoucherOrder:
    """A partner's ADMIN or FINANCE user (or API key) buys vouchers."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account = await Account.get(id=actor.require_account())
    if not account.is_partner:
        raise DomainError(
            ErrorCode.NOT_A_PARTNER, "Vouchers are for partners: ask your account manager to enable them."
        )
    customer_name = optional_text(request.customer_name, field="customer_name", max_length=CUSTOMER_NAME_MAX)
    notes = optional_text(request.notes, field="notes", max_length=NOTES_MAX, multiline=True)
    quote = await catalogue.quote(request.lines, currency=account.currency)
    method = await _payment_method(actor, account.id, request.payment_method)
    key = idempotency.clean_key(request.idempotency_key)
    fingerprint = {
        "lines": [(p.product.code, p.quantity, p.validity_years, p.fqdns, p.wildcards) for p in quote.lines],
        "customer_name": customer_name,
        "notes": notes,
        "method": method.value,
        "card": request.card_token,
    }
    response = await _replay_if_short(account, quote, method, key, fingerprint)
    if response is None:
        # Codes are made before the transaction (bench/README.md, W2), so it holds its locks only to write.
        sealed = [seal_codes(cipher, priced.quantity) for priced in quote.lines]
        details = _Details(account, actor, quote, method, customer_name, notes, sealed, public_url)
        response = await _buy(details, request.card_token, key, fingerprint, gateway)
    outbox.notify()
    order = await VoucherOrder.get(id=response["order_id"], account_id=account.id)
    await events.publish(
        bus, [events.order_changed(order.id, account.id, "PLACED"), events.account_changed(account.id, "ORDER_PLACED")]
    )
    return order


@dataclass(frozen=True)
class _Details:
    account: Account
    actor: Actor
    quote: Quote
    method: PaymentMethod
    customer_name: str | None
    notes: str | None
    sealed: list[list[codes.SealedCode]]
    public_url: str


async def _replay_if_short(
    account: Account, quote: Quote, method: PaymentMethod, key: str | None, fingerprint: dict[str, Any]
) -> dict[str, Any] | None:
    """A balance too low for the order: the answer of a purchase that went through, else INSUFFICIENT_FUNDS.

    Advisory, to spare the crypto: the conditional debit inside the transaction decides.
    A replay of a purchase that went through is answered, whatever the balance is now.
    """
    if method != PaymentMethod.ACCOUNT_BALANCE or account.balance >= quote.total:
        return None
    response = await idempotency.stored_response(
        account_id=account.id, key=key, operation=ORDER_OPERATION, request=fingerprint
    )
    if response is None:
        raise insufficient_funds(quote.total, account.balance, account.currency)
    return response


async def _buy(
    details: _Details, card_token: str | None, key: str | None, fingerprint: dict[str, Any], gateway: PaymentGateway
) -> dict[str, Any]:
    if details.method == PaymentMethod.ACCOUNT_BALANCE:
        return await idempotency.once(
            account_id=details.account.id,
            key=key,
            operation=ORDER_OPERATION,
            request=fingerprint,
            effect=lambda conn: _commit(conn, details, charge_reference=None),
        )
    return await _pay_by_card(details, card_token, key, fingerprint, gateway)


async def _pay_by_card(
    details: _Details, card_token: str | None, key: str | None, fingerprint: dict[str, Any], gateway: PaymentGateway
) -> dict[str, Any]:
    token = clean_text(card_token or "", field="card_token", max_length=255)
    account = details.account
    begun = await idempotency.begin(account_id=account.id, key=key, operation=ORDER_OPERATION, request=fingerprint)
    if begun.replay is not None:
        return begun.replay
    payment = CardPayment(
        gateway, account.id, account.currency, details.quote.total, token, "order", "Nothing was ordered."
    )

    async def commit(conn: BaseDBAsyncClient, charge: Charge) -> dict[str, Any]:
        return await _commit(conn, details, charge_reference=charge.reference)

    return await charge_then_commit(payment, begun, commit, lambda response: response)


async def _commit(conn: BaseDBAsyncClient, d: _Details, *, charge_reference: str | None) -> dict[str, Any]:
    """Write the order, its lines, its vouchers, its history, its debit and its outbox rows."""
    now = clock.now()
    order = await VoucherOrder.create(
        account_id=d.account.id,
        number=new_order_number(now),
        customer_name=d.customer_name,
        notes=d.notes,
        payment_method=d.method,
        total=d.quote.total,
        currency=d.account.currency,
        voucher_count=d.quote.voucher_count,
        gateway_charge_reference=charge_reference,
        placed_by_user_id=d.actor.user_id,
        placed_by_api_key_id=d.actor.api_key_id,
        created_at=now,
        using_db=conn,
    )
    expires_at = expiry_of(now)
    for position, (priced, sealed) in enumerate(zip(d.quote.lines, d.sealed, strict=True), start=1):
        line = await VoucherOrderLine.create(
            order_id=order.id,
            position=position,
            product_id=priced.product.id,
            product_code=priced.product.code,
            product_name=priced.product.name,
            quantity=priced.quantity,
            validity_years=priced.validity_years,
            fqdns=priced.fqdns,
            wildcards=priced.wildcards,
            unit_price=priced.unit_price,
            line_total=priced.line_total,
            using_db=conn,
        )
        await insert_vouchers(conn, order, line.id, sealed, created_at=now, expires_at=expires_at)
    actor_ids = {"actor_user_id": d.actor.user_id, "actor_api_key_id": d.actor.api_key_id}
    await OrderEvent.create(
        order_id=order.id,
        kind=OrderEventKind.PLACED,
        data={"vouchers": d.quote.voucher_count, "total": str(to_decimal(d.quote.total, order.currency))},
        using_db=conn,
        **actor_ids,
    )
    if d.method == PaymentMethod.ACCOUNT_BALANCE:
        entry = await post_entry(
            conn,
            account_id=d.account.id,
            kind=LedgerEntryKind.PURCHASE,
            amount=-d.quote.total,
            memo=f"Voucher order {order.number}",
            actor=d.actor,
            order_id=order.id,
            public_url=d.public_url,
        )
        paid = {"method": d.method.value, "ledgerEntryId": entry.id}
    else:
        paid = {"method": d.method.value, "reference": charge_reference}
    await OrderEvent.create(order_id=order.id, kind=OrderEventKind.PAID, data=paid, using_db=conn, **actor_ids)
    await _confirmation(conn, d, order)
    await webhook_events.emit(
        conn,
        account_id=d.account.id,
        event=WebhookEventType.VOUCHER_ORDER_PLACED,
        data={"order": webhook_events.placed_order(order, d.quote)},
    )
    await outbox.add(RENDER_PDF, {"order_id": order.id}, using_db=conn)
    return {"order_id": order.id}


def seal_codes(cipher: codes.CodeCipher, quantity: int) -> list[codes.SealedCode]:
    """New codes, sealed: what a line's vouchers store."""
    return [cipher.seal(codes.generate()) for _ in range(quantity)]


async def insert_vouchers(
    conn: BaseDBAsyncClient,
    order: VoucherOrder,
    line_id: int,
    sealed: list[codes.SealedCode],
    *,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    """Bulk-insert a line's vouchers: COPY on PostgreSQL, batched inserts on SQLite."""
    if conn.capabilities.dialect == "postgres":
        records = [
            (
                order.account_id,
                order.id,
                line_id,
                s.digest,
                s.ciphertext,
                s.hint,
                VoucherStatus.VALID_UNUSED.value,
                expires_at,
                created_at,
            )
            for s in sealed
        ]
        async with conn.acquire_connection() as raw:
            await raw.copy_records_to_table(
                "voucher",
                records=records,
                columns=[
                    "account_id",
                    "order_id",
                    "line_id",
                    "code_digest",
                    "code_ciphertext",
                    "code_hint",
                    "status",
                    "expires_at",
                    "created_at",
                ],
            )
        return
    await Voucher.bulk_create(
        [
            Voucher(
                account_id=order.account_id,
                order_id=order.id,
                line_id=line_id,
                code_digest=s.digest,
                code_ciphertext=s.ciphertext,
                code_hint=s.hint,
                status=VoucherStatus.VALID_UNUSED,
                expires_at=expires_at,
                created_at=created_at,
            )
            for s in sealed
        ],
        batch_size=1_000,
        using_db=conn,
    )


async def _confirmation(conn: BaseDBAsyncClient, d: _Details, order: VoucherOrder) -> None:
    """The order confirmation goes to the person who ordered, or to the finance contacts for an API key."""
    if d.actor.user_id is not None:
        recipients = [
            str(e) for e in await User.filter(id=d.actor.user_id).using_db(conn).values_list("email", flat=True)
        ]
    else:
        recipients = await finance_contacts(conn, d.account.id)
    if not recipients:
        return
    await outbox.add(
        SEND_EMAIL,
        email_payload(
            ORDER_PLACED,
            to=recipients,
            locale=d.account.locale,
            context={
                "account_name": d.account.name,
                "number": order.number,
                "customer_name": order.customer_name or "",
                "vouchers": order.voucher_count,
                "total": f"{to_decimal(order.total, order.currency)} {order.currency}",
                "payment_method": order.payment_method.value,
                "link": f"{d.public_url}/orders/{order.number}",
            },
        ),
        using_db=conn,
    )
