"""One webhook attempt over HTTP: to the checked address, 10 s in all, no redirects, first bytes kept."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import httpx

from services.webhook_urls import Url

TIMEOUT_SECONDS = 10.0
BODY_KEPT_BYTES = 1024
USER_AGENT = "vouchsafe-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str  # the first BODY_KEPT_BYTES, as text


class AttemptError(Exception):
    """No answer: a timeout, a refused or broken connection, a TLS failure. The message is for the partner."""


class Sender(Protocol):
    async def post(self, url: Url, address: str, headers: dict[str, str], body: bytes) -> Answer: ...

    async def aclose(self) -> None: ...


def _kept(data: bytes) -> str:
    # PostgreSQL text holds no NUL; whatever the receiver sent is shown, never run.
    return data[:BODY_KEPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class HttpSender:
    """httpx, never following redirects, never reading proxies from the environment.

    The request goes to the address checked by services.webhook_urls, with the URL's host
    in the Host header and in TLS (SNI and certificate check), so DNS is asked once. No
    connection is kept between attempts: a pooled connection is keyed by address, and two
    host names on one address must never share one.
    """

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    async def post(self, url: Url, address: str, headers: dict[str, str], body: bytes) -> Answer:
        host = f"[{address}]" if ":" in address else address
        request = self._client.build_request(
            "POST",
            f"{url.scheme}://{host}:{url.port}{url.target}",
            content=body,
            headers={
                **headers,
                "Host": url.host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Accept-Encoding": "identity",
            },
            extensions={"sni_hostname": url.host},
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.send(request, stream=True)
                try:
                    kept = b""
                    async for chunk in response.aiter_raw():
                        kept += chunk
                        if len(kept) >= BODY_KEPT_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise AttemptError(f"No answer within {self.timeout:g} s.") from exc
        except httpx.TimeoutException as exc:
            raise AttemptError(f"No answer within {self.timeout:g} s.") from exc
        except httpx.HTTPError as exc:
            raise AttemptError(f"Connection failed: {exc or type(exc).__name__}"[:300]) from exc
        return Answer(status=response.status_code, body=_kept(kept))

    async def aclose(self) -> None:
        await self._client.aclose()
