"""VOUCHSAFE_LOG_FORMAT=json: one JSON object a line, with the request's context, and no secret in any line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from infra import logs
from tests.support.factories import PASSWORD, SIGN_IN, SIGN_UP, unique_email
from tests.support.processes import serving
from web.redeem import _masked, mask_secrets

CODE = "VS-6AK81-7BEAW-CX117-HNK6K"
SESSION = "vss_" + "Q" * 43
API_KEY = "vsk_" + "k9-_" * 10
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0" * 5 + "=="


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("vouchsafe.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_line_is_one_json_object_with_the_request_context() -> None:
    formatter = logs.JsonFormatter(mask_secrets)
    tokens = (logs.REQUEST_ID.set("abc123"), logs.OPERATION.set("VoucherRedeem"), logs.ACCOUNT_ID.set(42))
    try:
        entry = record("redeemed in %s ms", 12)
        entry.duration_ms = 12.5
        line = formatter.format(entry)
    finally:
        logs.REQUEST_ID.reset(tokens[0])
        logs.OPERATION.reset(tokens[1])
        logs.ACCOUNT_ID.reset(tokens[2])
    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["level"] == "ERROR"
    assert parsed["logger"] == "vouchsafe.test"
    assert parsed["message"] == "redeemed in 12 ms"
    assert parsed["request_id"] == "abc123"
    assert parsed["operation"] == "VoucherRedeem"
    assert parsed["account_id"] == 42
    assert parsed["duration_ms"] == 12.5
    assert parsed["time"].endswith("+00:00")
    assert "request_id" not in json.loads(formatter.format(record("outside a request")))


def test_codes_tokens_keys_and_secrets_are_masked_in_message_args_and_exceptions() -> None:
    formatter = logs.JsonFormatter(mask_secrets)
    secrets = (CODE, CODE.replace("-", ""), SESSION, API_KEY, WEBHOOK_SECRET, "/downloads/x?t=dl-token-value")
    for secret in secrets:
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError as exc:
            line = formatter.format(record("got %s and " + secret, secret, exc=exc))
        parsed = json.loads(line)
        assert "Traceback" in parsed["exception"]
        for leaked in (CODE, "6AK81", SESSION, API_KEY, WEBHOOK_SECRET, "dl-token-value"):
            assert leaked not in line, (secret, line)
    text = logs.MaskingTextFormatter(mask=mask_secrets).format(record("session " + SESSION))
    assert SESSION not in text
    assert "vss_…" in text


# The pieces the patterns are made of, odd spellings included (`ſ` and the Kelvin sign match `s` and `k` in `re`).
PIECES = st.sampled_from(
    [
        "vs",
        "VS",
        "vſ",
        "Vs",
        "-",
        " ",
        "+",
        "%20",
        "6AK81",
        "7bEaW",
        "\u212a9x1z",
        "/redeem/",
        "/ReDeEm/",
        "?t=",
        "&t=",
        "t=",
        "vss_",
        "vsk_",
        "whsec_",
        "abc",
        "/graphql",
        '"',
        "127.0.0.1:5000",
        "é",
    ]
)


@given(st.lists(PIECES, max_size=12).map("".join))
@example("vſ 6AK81 7bEaW 6AK81 6AK81")  # lower() keeps `ſ`, casefold() makes it an `s`
def test_the_quick_look_never_changes_what_is_masked(text: str) -> None:
    # mask_secrets skips the scans of a line without the patterns' fixed parts: never one they would change
    assert mask_secrets(text) == _masked(text)


def test_serve_writes_json_lines_without_secrets(tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    email = unique_email("jsonlog")
    with serving(tmp_path / "data", log_path, extra_env={"VOUCHSAFE_LOG_FORMAT": "json"}) as http:
        signed_up = http.post(
            "/graphql",
            json={"query": SIGN_UP, "variables": {"input": {"email": email, "password": PASSWORD, "accountName": "J"}}},
        )
        assert signed_up.json()["data"]["signUp"]["errors"] == []
        signed_in = http.post(
            "/graphql", json={"query": SIGN_IN, "variables": {"input": {"email": email, "password": PASSWORD}}}
        )
        token = signed_in.json()["data"]["signIn"]["token"]
        viewer = http.post(
            "/graphql",
            json={"query": "query Viewer { viewer { account { id } } }"},
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": "probe-viewer-1"},
        )
        assert viewer.headers["X-Request-Id"] == "probe-viewer-1"
        assert http.get(f"/redeem/{CODE}").status_code == 200
        assert http.get(f"/no-such-page?code={CODE}&t=download-token-1").status_code == 404
        with httpx.Client(base_url=http.base_url) as other:  # a token in a header of a refused request
            other.post("/graphql", content=b"{", headers={"Authorization": f"Bearer {token}"})
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in parsed)
    text = log_path.read_text()
    for secret in (token, CODE, "6AK81", "download-token-1", PASSWORD):
        assert secret not in text, secret
    [access] = [e for e in parsed if e.get("request_id") == "probe-viewer-1" and e["logger"] == "uvicorn.access"]
    assert access["operation"] == "Viewer", access
    assert isinstance(access["account_id"], int), access
