"""Listen and upstream addresses parsed, resolved and printed the way Go's ``net`` package does."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

__all__ = ["AddressError", "Endpoint", "format_hostport", "resolve", "split_hostport"]


class AddressError(OSError):
    """An address that cannot be parsed, resolved or bound; the text is Go's wording."""


@dataclass(frozen=True)
class Endpoint:
    """A resolved TCP address: ``host`` is an IP literal or ``""`` for every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family to bind or dial it with."""
        if not self.host or ":" in self.host:
            return socket.AF_INET6
        return socket.AF_INET


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (Go's ``JoinHostPort``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_hostport(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: ``(host, port)`` or an error in Go's words."""
    if ":" not in address:
        raise AddressError(f"address {address}: missing port in address")
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise AddressError(f"address {address}: missing ']' in address")
        rest = address[end + 1 :]
        if not rest:
            raise AddressError(f"address {address}: missing port in address")
        if not rest.startswith(":") or ":" in rest[1:]:
            raise AddressError(f"address {address}: too many colons in address")
        return address[1:end], rest[1:]
    host, _, port = address.rpartition(":")
    if ":" in host:
        raise AddressError(f"address {address}: too many colons in address")
    if "[" in host or "]" in host:
        raise AddressError(f"address {address}: unexpected bracket in address")
    return host, port


def _port(address: str, text: str) -> int:
    if text.isascii() and text.isdigit():
        port = int(text)
        if port <= 65535:
            return port
    elif text:
        try:
            return socket.getservbyname(text, "tcp")
        except (OSError, ValueError):  # ValueError: a NUL or a surrogate in the name
            raise AddressError(f"lookup tcp/{text}: unknown port") from None
    if not text:
        return 0
    raise AddressError(f"address {address}: invalid port")


def resolve(address: str) -> Endpoint:
    """Go's ``net.ResolveTCPAddr("tcp", address)``: a name becomes its first IPv4 address."""
    if not address:
        return Endpoint("", 0)  # Go: every interface, any port
    host, port_text = split_hostport(address)
    port = _port(address, port_text)
    if not host:
        return Endpoint("", port)
    try:
        return Endpoint(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, ValueError):  # UnicodeError: not a valid IDNA name (too long, surrogates)
        raise AddressError(f"lookup {host}: no such host") from None
    addresses = [str(info[4][0]) for info in infos]
    ipv4 = [a for a in addresses if ":" not in a]
    return Endpoint((ipv4 or addresses)[0], port)
