"""Where a webhook may be sent: https only, and only to public addresses (no SSRF into our network).

A URL is checked when an endpoint is saved and again before every attempt: its host is
resolved, every address it resolves to must be public, and the attempt connects to the
address that was checked (services.webhook_http), so a DNS answer that changes between
the check and the connection (rebinding) cannot point it inside. Addresses embedded in
IPv6 (IPv4-mapped, 6to4, NAT64) are judged by the IPv4 address they carry.

VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE=1 (development and tests only) allows plain http and
local addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from services.errors import invalid

URL_MAX = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Never a target, whatever `is_global` says on this Python: loopback, private, link-local
# (cloud metadata at 169.254.169.254), CGNAT (Alibaba's metadata at 100.100.100.200),
# unspecified, multicast, reserved and documentation ranges, benchmarking, unique-local
# (AWS's IPv6 metadata at fd00:ec2::254), site-local.
_BLOCKED = [
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: IPAddress) -> bool:
    """Whether a webhook may connect to this address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    if any(address.version == net.version and address in net for net in _BLOCKED):
        return False
    return address.is_global and not address.is_multicast


class Resolver(Protocol):
    """Host name -> the addresses it resolves to now (a port: tests pass a sandbox one)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_SECONDS
        )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Url:
    """A webhook URL taken apart: what the request names (host) and where it goes (port, target)."""

    text: str
    scheme: str
    host: str
    port: int
    target: str  # path and query

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def parse(text: str, *, allow_insecure: bool) -> Url:
    """A URL a webhook may be sent to, or INVALID on `url`."""
    text = text.strip()
    if not text or len(text) > URL_MAX:
        raise invalid("url", f"Enter a URL of at most {URL_MAX} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise invalid("url", "A URL has no spaces or control characters.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise invalid("url", "This is not a valid URL.") from exc
    allowed = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in allowed:
        raise invalid("url", "Webhook URLs must use https.")
    if not parts.hostname:
        raise invalid("url", "The URL needs a host.")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and screens: a webhook verifies the signature instead.
        raise invalid("url", "A webhook URL carries no user name or password.")
    if parts.fragment:
        raise invalid("url", "A webhook URL has no #fragment.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Url(text=text, scheme=parts.scheme, host=parts.hostname.lower(), port=port or default, target=target)


class UnsafeAddress(Exception):
    """The URL's host is not a public address (now); the message says so without naming it."""


async def checked_address(url: Url, resolver: Resolver, *, allow_insecure: bool) -> str:
    """The address to connect to: resolved now, every answer public (unless insecure is allowed)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(url.host)
    except ValueError:
        literal = None
    if literal is not None:
        answers = [literal]
    else:
        try:
            resolved = await resolver.resolve(url.host, url.port)
        except (OSError, TimeoutError) as exc:
            raise UnsafeAddress("The URL's host name could not be resolved.") from exc
        answers = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
    if not answers:
        raise UnsafeAddress("The URL's host name could not be resolved.")
    if not allow_insecure and not all(is_public(a) for a in answers):
        # The address is not named: an internal host's address is nobody's business.
        raise UnsafeAddress("The URL's host resolves to an address that is not public.")
    return str(answers[0])


async def check(text: str, resolver: Resolver, *, allow_insecure: bool) -> Url:
    """An endpoint's URL as saved: its form, then its host's addresses; INVALID on `url` otherwise."""
    url = parse(text, allow_insecure=allow_insecure)
    try:
        await checked_address(url, resolver, allow_insecure=allow_insecure)
    except UnsafeAddress as exc:
        raise invalid("url", str(exc)) from exc
    return url
