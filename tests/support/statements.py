"""Counting the SQL statements one request sends (Tortoise logs each on tortoise.db_client at DEBUG)."""

from __future__ import annotations

import contextvars
import logging

from tests.support.api import Api

DASHBOARD = """query Dashboard($orders: Int!, $vouchers: Int!) {
  viewer { account { balance { amount } } }
  voucherOrders(first: $orders) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id number customerName status paymentMethod total { amount currencyCode } createdAt
      lines { productName quantity validityYears fqdns wildcards unitPrice { amount } }
      statusCounts { validUnused validUsed expired cancelled total }
      cancellable cancelBlockers { code }
      vouchers(first: $vouchers) {
        totalCount pageInfo { hasNextPage } edges { cursor node { id code status expiresAt } }
      }
      history(first: 5) { edges { node { kind actor createdAt } } }
      pdf { status }
    } }
  }
}"""


_in_request = contextvars.ContextVar("in_request", default=False)


class StatementCounter(logging.Handler):
    """Counts the statements Tortoise sends (it logs each one on tortoise.db_client at DEBUG).

    Only statements sent from the request's own context count: the in-process worker
    (e-mails, PDF rendering) shares the logger but runs in tasks started before it.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _in_request.get():
            self.statements.append(record.getMessage()[:200])


async def statements_for(api: Api, token: str, orders: int, vouchers: int) -> tuple[int, dict]:
    return await statements_of(api, token, DASHBOARD, {"orders": orders, "vouchers": vouchers})


async def statements_of(api: Api, token: str, query: str, variables: dict) -> tuple[int, dict]:
    """How many statements one request of `query` sends, and its data."""
    logger = logging.getLogger("tortoise.db_client")
    counter = StatementCounter()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    marker = _in_request.set(True)  # the ASGI app runs in this task; its DataLoader tasks inherit the mark
    try:
        result = await api(query, variables, token=token)
    finally:
        _in_request.reset(marker)
        logger.removeHandler(counter)
        logger.setLevel(previous)
    assert "errors" not in result, result
    return len(counter.statements), result["data"]
