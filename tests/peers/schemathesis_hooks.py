"""schemathesis hooks for test_peers.py (SCHEMATHESIS_HOOKS): vouchsafe's scalar and what counts as a server error.

schemathesis's own GraphQL check fails on every GraphQL error, a client's mistake
(PERMISSION_DENIED, RATE_LIMITED, a refused input) included. A server error here is
what the server did wrong: a 5xx, a body that is not the GraphQL JSON, or an error the
server masked as its own (INTERNAL_SERVER_ERROR).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

# Money: decimal strings (as clients must send them) and text that is not one.
AMOUNTS = st.decimals(min_value=-(10**7), max_value=10**7, places=2, allow_nan=False, allow_infinity=False).map(str)
schemathesis.graphql.scalar("Decimal", st.one_of(AMOUNTS, st.text(max_size=45)).map(nodes.String))


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, always a JSON body, and no INTERNAL_SERVER_ERROR among its errors."""
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        body = response.json()
    except ValueError as exc:
        raise AssertionError(
            f"HTTP {response.status_code} with a body that is not JSON: {response.text[:200]}"
        ) from exc
    for error in body.get("errors") or []:
        if (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR":
            raise AssertionError(f"INTERNAL_SERVER_ERROR: {error.get('message')}")
