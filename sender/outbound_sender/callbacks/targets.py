"""Where a callback may go: public addresses only, unless OUTBOUND_CALLBACKS_ALLOW_PRIVATE.

A URL's host is resolved and every address it resolves to must be public (a name with one private
address among public ones is refused: the connection could use it). The check runs when the URL
is registered and again before every delivery, and the delivery connects to an address that
passed that very check (the hostname goes in the Host header and TLS SNI), so a name re-pointed
at an internal address after registration (DNS rebinding) gets no request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedTarget(ValueError):
    """The URL cannot be a callback target; the text says why (shown to the API client)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str  # as written in the URL (lower case), without brackets
    port: int
    addresses: tuple[Address, ...]  # every one checked

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, CGNAT, reserved, multicast or
    unspecified (an IPv4-mapped IPv6 address is judged by its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable callback URL, or RefusedTarget."""
    if len(url) > MAX_URL:
        raise RefusedTarget(f"is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedTarget("is not a valid URL") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise RefusedTarget("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("must not carry credentials (user:password@)")
    if parts.fragment:
        raise RefusedTarget("must not have a fragment (#...)")
    if not parts.hostname:
        raise RefusedTarget("has no host")
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


async def check(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Resolve the URL's host and check every address; RefusedTarget names the first refused one."""
    scheme, host, port = parse(url)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            answers = await resolver(host, port)
        except (OSError, ValueError) as error:  # ValueError: UnicodeError (IDNA), NUL in the name
            raise RefusedTarget(f"host {host!r} does not resolve ({error})") from None
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise RefusedTarget(f"host {host!r} resolves to something that is not an address") from None
        if not addresses:
            raise RefusedTarget(f"host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise RefusedTarget(
                    f"reaches {address}, which is not a public address (private, loopback, link-local or reserved)"
                )
    return Target(url, scheme, host, port, tuple(dict.fromkeys(addresses)))
