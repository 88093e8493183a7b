"""Codes as secrets: format, randomness source, storage and pricing properties."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tortoise import connections

from models import Product
from services import codes
from services.catalogue import LineRequest, price_lines
from services.codes import CodeCipher
from services.errors import DomainError
from services.events import KeptEvents

ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


class TestGenerate:
    def test_100k_codes_are_unique_20_symbols_crockford(self) -> None:
        bodies = [codes.generate() for _ in range(100_000)]
        assert len(set(bodies)) == 100_000
        assert all(len(b) == 20 and ALPHABET.issuperset(b) for b in bodies)
        # each symbol position is used across the alphabet: 100 bits, not a narrower source
        assert all(len({b[i] for b in bodies}) == 32 for i in range(20))
        assert re.match(r"^VS(-[0-9A-HJKMNP-TV-Z]{5}){4}$", codes.display(bodies[0]))

    def test_never_from_random(self) -> None:
        tree = ast.parse(Path(codes.__file__).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "random" not in imported
        assert "secrets" in imported


class TestNormalize:
    def test_variants_resolve_to_the_same_code(self) -> None:
        body = "0123456789ABCDEFGHJK"
        shown = codes.display(body)  # VS-01234-56789-ABCDE-FGHJK
        variants = [
            shown,
            shown.lower(),
            shown.replace("-", ""),
            shown.replace("-", " "),
            " " + shown + " ",
            body,
            body.lower(),
            shown.replace("0", "O").replace("1", "I"),
            shown.replace("1", "L").lower(),
            "vs 01234 56789 abcde fghjk",
        ]
        assert {codes.normalize(v) for v in variants} == {body}

    def test_other_characters_are_refused(self) -> None:
        for bad in (
            "VS-01234-56789-ABCDE-FGHJU",
            "VS-01234-56789-ABCDE-FGHJ",
            "VS-01234-56789-ABCDE-FGHJK-1",
            "VS-01234-56789-ABCDE-FGHJ!",
            "",
            "VS",
            "XX-01234-56789-ABCDE-FGHJK",
        ):
            assert codes.normalize(bad) is None, bad


class TestStorage:
    def test_sealed_codes_open_only_with_their_digest_and_key(self) -> None:
        cipher, other = CodeCipher(b"a" * 32), CodeCipher(b"b" * 32)
        body = codes.generate()
        sealed = cipher.seal(body)
        assert cipher.open(sealed.ciphertext, sealed.digest) == body
        assert body.encode() not in sealed.ciphertext
        assert other.digest(body) != sealed.digest  # the lookup breaks when the key changes
        assert sealed.hint == body[-5:]

    async def test_no_code_in_clear_in_any_table(self, db: None, settings: object) -> None:
        from services import orders
        from services.payments import SandboxGateway
        from services.reveal import reveal_codes
        from tests.support.factories import partner_admin

        actor = await partner_admin(name="Sealed codes")
        cipher = CodeCipher(b"k" * 32)
        request = orders.OrderRequest(
            lines=[LineRequest("BASIC_OV", 100, 1, 1, 0)], card_token="tok_visa", customer_name="Sealed codes customer"
        )
        order = await orders.place_order(
            actor=actor,
            request=request,
            gateway=SandboxGateway(),
            cipher=cipher,
            public_url="http://127.0.0.1:8000",
            bus=KeptEvents(),
        )
        shown = [r.code for r in await reveal_codes(actor=actor, order_id=order.id, cipher=cipher, bus=KeptEvents())]
        bodies = [codes.normalize(c) for c in shown]
        assert len(bodies) == 100
        conn = connections.get("default")
        postgres = conn.capabilities.dialect == "postgres"
        tables_sql = (
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'"
            if postgres
            else "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        dump = []
        for row in await conn.execute_query_dict(tables_sql):
            for record in await conn.execute_query_dict(f'SELECT * FROM "{row["name"]}"'):
                dump.append(" ".join(repr(v) for v in record.values()).upper())
        text = "\n".join(dump)
        for body, full in zip(bodies, shown, strict=True):
            assert body is not None
            assert body not in text
            assert full not in text
        # the lookup works with the key, and breaks with another
        from models import Voucher

        assert await Voucher.filter(code_digest=cipher.digest(bodies[0] or "")).exists()
        assert not await Voucher.filter(code_digest=CodeCipher(b"x" * 32).digest(bodies[0] or "")).exists()


def _product(code: str, **prices: int) -> Product:
    return Product(
        code=code,
        name=code,
        validity_years=[1, 2, 3],
        included_fqdns=1,
        max_fqdns=250,
        max_wildcards=100,
        currency="USD",
        price_base_per_year=prices.get("base", 17_500),
        price_fqdn_per_year=prices.get("fqdn", 7_500),
        price_wildcard_per_year=prices.get("wildcard", 45_000),
        is_ev=False,
        active=True,
    )


lines_strategy = st.lists(
    st.builds(
        LineRequest,
        product_code=st.sampled_from(["A", "B"]),
        quantity=st.integers(1, 500),
        validity_years=st.sampled_from([1, 2, 3]),
        fqdns=st.integers(0, 250),
        wildcards=st.integers(0, 100),
    ),
    min_size=1,
    max_size=20,
)


class TestPricingProperty:
    @settings(max_examples=200, deadline=None)
    @given(lines=lines_strategy, base=st.integers(0, 10**7), fqdn=st.integers(0, 10**6), wildcard=st.integers(0, 10**6))
    def test_total_is_the_sum_of_exact_line_prices(
        self, lines: list[LineRequest], base: int, fqdn: int, wildcard: int
    ) -> None:
        products = {"A": _product("A", base=base, fqdn=fqdn, wildcard=wildcard), "B": _product("B")}
        try:
            quote = price_lines(lines, products, currency="USD")
        except DomainError:
            assert (
                any(line.fqdns + line.wildcards < 1 for line in lines) or sum(line.quantity for line in lines) > 10_000
            )
            return
        assert quote.total == sum(p.line_total for p in quote.lines)
        for p in quote.lines:
            assert p.line_total == p.unit_price * p.quantity
            assert isinstance(p.unit_price, int)
            assert p.unit_price >= 0


def test_redact_masks_whatever_looks_like_a_code() -> None:
    body = codes.generate()
    shown = codes.display(body)
    for typed in (shown, shown.lower(), "VS " + " ".join(body[i : i + 5] for i in range(0, 20, 5)), "VS" + body):
        text = codes.redact(f"Variable '$input' got invalid value ['{typed}']; Expected type")
        assert body[-5:] not in text
        assert body[:5] not in text
        assert "got invalid value" in text
    assert codes.redact("VS-ABCDE is not one") == "VS-ABCDE is not one"
