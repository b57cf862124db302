"""The outbound guard: where connectors may send requests (SSRF defence).

A URL is refused, before any connection is opened, when its host is, or resolves to, an address
that is not globally routable (private, loopback, link-local, unique-local, shared, multicast,
reserved, unspecified), unless an allow-list entry (a host name or a CIDR range) admits it.
Legacy IPv4 spellings (2130706433, 0x7f.1, 0177.0.0.1) and IPv4-mapped IPv6 are read the way
the operating system would read them. The transport then connects to the address it checked
(keeping Host and TLS SNI), so a DNS answer that changes between the check and the connection
cannot smuggle a private address in. Redirects to another host are refused outright.
"""

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = frozenset({"http", "https"})
# Translation prefixes that embed an IPv4 address (RFC 6052 NAT64, RFC 3056 6to4).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class OutboundRefused(Exception):
    """The URL may not be called. Not an httpx error on purpose: it is never retryable."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"outbound call to {url} refused: {reason}")
        self.url = url
        self.reason = reason


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's reading of a host (127.1, 2130706433, 0x7f000001, 0177.0.0.1), if it has one."""
    if not host or any(c not in "0123456789abcdefxABCDEFX." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without DNS, in any spelling the resolver would accept."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return _legacy_ipv4(bare)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    inner = _embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    return address.is_global and not address.is_multicast


class OutboundPolicy:
    """An allow-list of host names and CIDR ranges; everything public is allowed anyway."""

    def __init__(self, allow: Sequence[str] = ()) -> None:
        self.hosts: frozenset[str] = frozenset()
        self.networks: tuple[IPNetwork, ...] = ()
        hosts, networks = set(), []
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        self.hosts, self.networks = frozenset(hosts), tuple(networks)

    def admits(self, address: IPAddress) -> bool:
        inner = _embedded_ipv4(address)
        candidates = [address] if inner is None else [address, inner]
        if any(
            a in network
            for a in candidates
            for network in self.networks
            if a.version == network.version
        ):
            return True
        return is_public(address)

    async def resolve(self, url: httpx.URL) -> list[IPAddress] | None:
        """The checked addresses to connect to; None when the host is allow-listed by name.

        Raises OutboundRefused for a bad scheme, a refused address or a host that does not
        resolve (an unresolvable host is refused rather than retried: it is configuration).
        """
        shown = str(url.copy_with(query=None, fragment=None))
        if url.scheme not in _SCHEMES:
            raise OutboundRefused(shown, f"scheme {url.scheme!r} is not http or https")
        host = url.host.lower().rstrip(".")
        if not host:
            raise OutboundRefused(shown, "the URL has no host")
        if host in self.hosts:
            return None
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = await _getaddrinfo(
                host, url.port or (443 if url.scheme == "https" else 80), shown
            )
        refused = [a for a in addresses if not self.admits(a)]
        if refused:
            # One bad answer refuses the host: an attacker picks which answer we would use.
            raise OutboundRefused(shown, f"{host} is {refused[0]}, which is not a public address")
        return addresses


async def _getaddrinfo(host: str, port: int, shown: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundRefused(shown, f"{host} does not resolve: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OutboundRefused(shown, f"{host} has no addresses")
    return addresses


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request (every redirect hop too) and connects to the checked address."""

    def __init__(
        self, policy: OutboundPolicy, inner: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.policy = policy
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await self.policy.resolve(request.url)
        if addresses is None or literal_address(request.url.host) is not None:
            return await self.inner.handle_async_request(request)
        # Connect only to addresses we checked; Host and TLS SNI keep the name.
        extensions: dict[str, Any] = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.host
        for n, address in enumerate(addresses, start=1):
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self.inner.handle_async_request(pinned)
            except httpx.ConnectError:
                # Nothing was sent; try the host's next checked address, as a resolver would.
                if n == len(addresses):
                    raise
        raise AssertionError("unreachable: resolve() returns at least one address")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _refuse_cross_host_redirect(response: httpx.Response) -> None:
    # Runs before httpx decides whether to follow, so a redirect elsewhere is never followed.
    location = response.headers.get("Location")
    if not response.is_redirect or location is None:
        return
    source = response.request.url
    target = source.join(location)
    if (target.scheme, target.host, target.port) != (source.scheme, source.host, source.port):
        raise OutboundRefused(str(target), "a redirect to another host is not followed")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verified TLS context every connector client shares: building one loads the CA bundle
    (about 30 ms), and a worker builds a client per vendor at each start."""
    return httpx.create_ssl_context()


def guarded_client(
    allow: Sequence[str] = (),
    *,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 20,
) -> httpx.AsyncClient:
    """An httpx client for connectors: pooled, timed out, guarded, and not following redirects."""
    inner = transport or httpx.AsyncHTTPTransport(
        verify=tls_context(),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(OutboundPolicy(allow), inner),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        event_hooks={"response": [_refuse_cross_host_redirect]},
    )
