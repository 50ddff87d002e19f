"""Where `security: plain` may go: the one rule for IMAP and SMTP, checked before any byte is sent.

An unencrypted connection carries the password (and the mail) readable by anyone on
the path, so `plain` is only for a server on this machine: the host must resolve to
loopback addresses only (127.0.0.0/8, ::1). A name is judged by what it resolves to,
not by how it is spelled (`localhost` on a machine whose resolver says otherwise is
refused; `mail.test` mapped to 127.0.0.1 is accepted).

The rule is applied three times: `config check` resolves every plain account's host
and names the field; before connecting, the host is resolved again and refused unless
every address is loopback (so nothing reaches a remote server); after connecting, the
peer address actually used is checked too, in case the name resolved differently in
between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Literal

Security = Literal["tls", "starttls", "plain"]
"""How a connection is secured: implicit TLS, STARTTLS, or (loopback only) none."""

Resolver = Callable[[str, int], list[str]]
"""host, port -> the IP addresses a connection to them could use."""


def is_loopback(address: str) -> bool:
    """An IP address literal in 127.0.0.0/8 or ::1 (an IPv4-mapped loopback counts too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def plain_refusal(host: str, addresses: Iterable[str]) -> str | None:
    """Why an unencrypted connection to `host` (resolved to `addresses`) is refused; None if allowed."""
    found = list(dict.fromkeys(addresses))
    if not found:
        return f"{host} does not resolve to any address"
    remote = [address for address in found if not is_loopback(address)]
    if not remote:
        return None
    shown = ", ".join(remote[:3]) + (", ..." if len(remote) > 3 else "")
    if remote == [host]:
        return f"{host} is not a loopback address"
    return f"{host} resolves to {shown}, which is not loopback"


def resolve(host: str, port: int) -> list[str]:
    """Every address `getaddrinfo` gives for a TCP connection to host:port; raises OSError."""
    return _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


async def resolve_async(host: str, port: int) -> list[str]:
    """`resolve` without blocking the event loop (the loop's own getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _addresses(infos)


def _addresses(infos: Iterable[tuple[object, ...]]) -> list[str]:
    found: list[str] = []
    for info in infos:
        sockaddr = info[4]
        if isinstance(sockaddr, tuple) and sockaddr and isinstance(sockaddr[0], str):
            found.append(sockaddr[0])
    return list(dict.fromkeys(found))


PLAIN_HINT = "set `security: tls` (or `starttls`); `plain` is only for a server on this machine (loopback)"
