"""Where a webhook may go: https to public addresses only, checked at save and at every attempt."""

from __future__ import annotations

import ipaddress

import pytest

from services.errors import DomainError, ErrorCode
from services.webhook_urls import SystemResolver, UnsafeAddress, check, checked_address, is_public, parse
from settings import SettingsError, load_settings


class FixedResolver:
    """A sandbox resolver: each host name answers what the test says (a DNS that can be rebound)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError("no such host")
        return list(self.answers[host])


NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # Alibaba metadata, in CGNAT
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "192.0.0.192",  # Oracle metadata
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:db8::1",
]
PUBLIC = ["93.184.215.14", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.215.14", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_loopback_private_link_local_cgnat_metadata_and_embedded_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


class TestParse:
    @pytest.mark.parametrize(
        "url",
        [
            "http://93.184.215.14/hook",
            "ftp://93.184.215.14/",
            "https://user:pass@93.184.215.14/",
            "https:///nohost",
            "https://93.184.215.14/a b",
            "https://93.184.215.14/#frag",
            "https://93.184.215.14:99999/",
            "https://" + "a" * 2050 + ".com/",
            "",
        ],
    )
    def test_production_refuses_anything_but_a_plain_https_url(self, url: str) -> None:
        with pytest.raises(DomainError) as refused:
            parse(url, allow_insecure=False)
        assert refused.value.code == ErrorCode.INVALID
        assert refused.value.field == ("url",)

    def test_the_insecure_setting_allows_http(self) -> None:
        url = parse("http://LOCALHOST:8080/hooks?x=1", allow_insecure=True)
        assert (url.scheme, url.host, url.port, url.target) == ("http", "localhost", 8080, "/hooks?x=1")
        assert url.host_header == "localhost:8080"

    def test_default_port_and_ipv6_host_header(self) -> None:
        assert parse("https://[2606:4700::1]/", allow_insecure=False).host_header == "[2606:4700::1]"
        assert parse("https://hooks.example/", allow_insecure=False).port == 443


class TestCheck:
    async def test_a_host_that_resolves_to_any_private_address_is_refused(self) -> None:
        resolver = FixedResolver({"mixed.example": ["93.184.215.14", "10.0.0.5"]})
        with pytest.raises(DomainError) as refused:
            await check("https://mixed.example/hook", resolver, allow_insecure=False)
        assert refused.value.field == ("url",)
        assert "10.0.0.5" not in refused.value.message  # an internal address is never named

    async def test_a_public_host_passes_and_is_connected_to_at_the_checked_address(self) -> None:
        resolver = FixedResolver({"hooks.example": ["93.184.215.14"]})
        url = await check("https://hooks.example/hook", resolver, allow_insecure=False)
        assert await checked_address(url, resolver, allow_insecure=False) == "93.184.215.14"

    async def test_rebinding_to_a_private_address_after_the_save_is_refused_at_delivery(self) -> None:
        resolver = FixedResolver({"rebind.example": ["93.184.215.14"]})
        url = await check("https://rebind.example/hook", resolver, allow_insecure=False)
        resolver.answers["rebind.example"] = ["169.254.169.254"]
        with pytest.raises(UnsafeAddress):
            await checked_address(url, resolver, allow_insecure=False)

    async def test_ip_literals_are_judged_without_dns(self) -> None:
        resolver = FixedResolver({})
        for url in ("https://127.0.0.1/", "https://[::ffff:127.0.0.1]/", "https://[::1]:8443/x", "https://0x7f000001/"):
            with pytest.raises(DomainError):
                await check(url, SystemResolver() if "0x" in url else resolver, allow_insecure=False)
        assert resolver.asked == []

    async def test_localhost_by_name_is_refused_in_production(self) -> None:
        with pytest.raises(DomainError):
            await check("https://localhost/hook", SystemResolver(), allow_insecure=False)

    async def test_the_insecure_setting_allows_local_addresses(self) -> None:
        url = await check("http://localhost:9/hook", SystemResolver(), allow_insecure=True)
        assert await checked_address(url, SystemResolver(), allow_insecure=True) in ("127.0.0.1", "::1")

    async def test_an_unresolvable_host_is_refused(self) -> None:
        with pytest.raises(DomainError):
            await check("https://nowhere.example/", FixedResolver({}), allow_insecure=False)


def test_the_insecure_setting_is_refused_in_production(tmp_path: object) -> None:
    env = {"VOUCHSAFE_DATA_DIR": str(tmp_path), "VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE": "1"}
    assert load_settings(env).webhooks_allow_insecure
    keys = {
        "VOUCHSAFE_SECRET_KEY": "a" * 44,
        "VOUCHSAFE_CODE_KEY": "b" * 44,
        "VOUCHSAFE_ENV": "production",
        "VOUCHSAFE_PUBLIC_URL": "https://vouchers.example.com",
    }
    with pytest.raises(SettingsError):
        load_settings({**env, **keys})
    assert not load_settings({**env, **keys, "VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE": "0"}).webhooks_allow_insecure
