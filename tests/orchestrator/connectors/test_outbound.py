"""The SSRF guard refuses non-public addresses before connecting, unless the allow-list admits them."""

import ipaddress
import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from orchestrator.outbound import (
    OutboundPolicy,
    OutboundRefused,
    guarded_client,
    is_public,
    literal_address,
    tls_context,
)
from tests.support.servers import serve_in_thread


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A bare listening socket on loopback: if anything connects, accept() will find it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, str | None]:
        return {"host": request.headers.get("host")}

    @app.get("/elsewhere")
    async def elsewhere(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=302)

    return app


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_loopback_in_any_spelling_is_refused_before_connecting(
    listener: socket.socket, host: str
) -> None:
    port = listener.getsockname()[1]
    async with guarded_client(timeout_s=1) as client:
        # httpx itself rejects some dotted spellings (0177.0.0.1) as invalid URLs: also a refusal.
        with pytest.raises((OutboundRefused, httpx.InvalidURL)):
            await client.get(f"http://{host}:{port}/")

    assert_no_connection(listener)


@pytest.mark.parametrize("host", [h.strip("[]") for h in LOOPBACK_SPELLINGS])
def test_guard_reads_every_spelling_as_the_resolver_would(host: str) -> None:
    address = literal_address(host)

    assert address is not None
    assert not OutboundPolicy().admits(address)
    assert OutboundPolicy(["127.0.0.0/8"]).admits(address)


async def test_hostname_resolving_to_loopback_is_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    async with guarded_client(timeout_s=1) as client:
        with pytest.raises(OutboundRefused, match="localhost"):
            await client.get(f"http://localhost:{port}/")

    assert_no_connection(listener)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:7f00:1::]",
        "224.0.0.1",
    ],
)
async def test_private_link_local_and_special_addresses_are_refused(host: str) -> None:
    # No listener: were the guard to let these through, the call would fail differently.
    async with guarded_client(timeout_s=0.5) as client:
        with pytest.raises(OutboundRefused):
            await client.get(f"http://{host}:9/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://x/"])
async def test_other_schemes_are_refused(url: str) -> None:
    async with guarded_client() as client:
        with pytest.raises(OutboundRefused, match="scheme"):
            await client.get(url)


def test_public_addresses_pass_without_an_allow_list() -> None:
    policy = OutboundPolicy()

    assert policy.admits(ipaddress.ip_address("93.184.216.34"))
    assert policy.admits(ipaddress.ip_address("2606:2800:220:1::1"))
    assert is_public(ipaddress.ip_address("8.8.8.8"))
    assert not is_public(ipaddress.ip_address("::ffff:192.168.0.1"))


@pytest.mark.parametrize("allow", [["127.0.0.0/8", "::1/128"], ["127.0.0.1"], ["localhost"]])
async def test_allow_list_admits_a_local_service(allow: list[str]) -> None:
    with serve_in_thread(echo_app()) as url:
        port = url.rsplit(":", 1)[1]
        host = "localhost" if allow == ["localhost"] else "127.0.0.1"
        async with guarded_client(allow, timeout_s=5) as client:
            response = await client.get(f"http://{host}:{port}/echo")

    assert response.status_code == 200
    assert response.json() == {"host": f"{host}:{port}"}


async def test_resolved_host_is_pinned_but_keeps_its_host_header() -> None:
    with serve_in_thread(echo_app()) as url:
        port = url.rsplit(":", 1)[1]
        async with guarded_client(["127.0.0.0/8", "::1/128"], timeout_s=5) as client:
            response = await client.get(f"http://localhost:{port}/echo")

    assert response.json() == {"host": f"localhost:{port}"}


async def test_allow_list_of_one_range_does_not_open_others(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    async with guarded_client(["10.0.0.0/8", "example.internal"], timeout_s=1) as client:
        with pytest.raises(OutboundRefused):
            await client.get(f"http://127.0.0.1:{port}/")

    assert_no_connection(listener)


async def test_redirect_to_another_host_is_refused() -> None:
    with serve_in_thread(echo_app()) as url:
        port = url.rsplit(":", 1)[1]
        allow = ["127.0.0.0/8", "localhost"]
        async with guarded_client(allow, timeout_s=5) as client:
            same_host = await client.get(f"{url}/elsewhere", params={"to": "/echo"})
            with pytest.raises(OutboundRefused, match="redirect"):
                await client.get(f"{url}/elsewhere", params={"to": f"http://localhost:{port}/echo"})

    # A same-host redirect is answered, not followed: connectors treat it as a protocol error.
    assert same_host.status_code == 302


async def test_unresolvable_host_is_refused() -> None:
    async with guarded_client(timeout_s=1) as client:
        with pytest.raises(OutboundRefused, match="does not resolve"):
            await client.get("http://no-such-host.invalid/")


def test_connector_clients_share_one_context_that_verifies_certificates() -> None:
    context = tls_context()
    assert context is tls_context()
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
