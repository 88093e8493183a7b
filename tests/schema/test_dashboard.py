"""The partner dashboard runs a constant number of SQL statements, whatever its page sizes."""

from __future__ import annotations

import pytest

from tests.support.api import Api
from tests.support.factories import line, order, partner
from tests.support.statements import statements_for


class TestDashboard:
    @pytest.mark.parametrize("sizes", [(20, 50)])
    async def test_constant_statements_whatever_the_page_sizes(self, api: Api, sizes: tuple[int, int]) -> None:
        p = await partner(api, balance=None)
        for i in range(20):
            placed = await order(
                api,
                p["token"],
                line("BASIC_OV", 3 if i % 2 else 55),
                cardToken="tok_visa",
                customerName=f"Customer {i}",
            )
            assert placed["errors"] == [], placed
        small, small_data = await statements_for(api, p["token"], 2, 1)
        large, large_data = await statements_for(api, p["token"], *sizes)
        edges = large_data["voucherOrders"]["edges"]
        assert len(edges) == 20
        assert {len(e["node"]["vouchers"]["edges"]) for e in edges} == {3, 50}
        assert len(small_data["voucherOrders"]["edges"]) == 2
        assert small == large, (small, large)
        # the session, the viewer (user and account joined), and one statement for the page of
        # orders with every part the document shows of them (services.order_page)
        assert large <= 3, large
