"""Which peers are trusted proxies, with the rules of Express's ``trust proxy`` (the proxy-addr module).

Pure. mendhak sets ``trust proxy`` to ``loopback, linklocal, uniquelocal``; ADDITIONAL_TRUSTED_PROXIES
adds addresses or CIDRs. proxy-addr's notation rules, kept here:

- ``a.b.c.d``, ``::1``: one address; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) counts as IPv4;
- ``net/len`` with 1 <= len <= 32 (IPv4) or 128 (IPv6): host bits may be set; ``/0`` is refused;
- ``a.b.c.d/255.255.0.0``: an IPv4 netmask;
- the names ``loopback``, ``linklocal``, ``uniquelocal``;
- an IPv4 peer also matches an IPv6 network through its mapped form, and a mapped IPv6 peer matches
  IPv4 networks.

``client_addresses`` walks X-Forwarded-For as proxy-addr's ``all`` does: from the peer leftwards
while the hop is trusted; empty list items are skipped (proxy-addr's parser drops them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAMED: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.1/8", "::1/128"),
    "linklocal": ("169.254.0.0/16", "fe80::/10"),
    "uniquelocal": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
}


class TrustError(ValueError):
    """One bad item of a proxy list; the message names it."""


def _address(text: str) -> Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise TrustError(f"not an IP address: {text!r}") from None
    return address


def parse_network(note: str) -> tuple[Network, ...]:
    """One item of a proxy list (proxy-addr's parseipNotation, plus the three names)."""
    note = note.strip()
    if note in _NAMED:
        return tuple(ipaddress.ip_network(net, strict=False) for net in _NAMED[note])
    text, slash, length = note.rpartition("/") if "/" in note else (note, "", "")
    address = _address(text)
    if not slash and isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    maximum = address.max_prefixlen
    prefix: int | None
    if not slash:
        prefix = maximum
    elif length.isascii() and length.isdigit() and len(length) <= 3:
        prefix = int(length)
    elif isinstance(address, ipaddress.IPv4Address):
        prefix = _netmask_length(length)
    else:
        prefix = None
    if prefix is None or not 1 <= prefix <= maximum:
        raise TrustError(f"invalid range on address: {note!r}")
    return (ipaddress.ip_network(f"{address}/{prefix}", strict=False),)


def _netmask_length(text: str) -> int | None:
    """A contiguous IPv4 netmask (255.255.0.0) as a prefix length; None for anything else."""
    try:
        network = ipaddress.IPv4Network(f"0.0.0.0/{text}")
    except ValueError:
        return None
    # Python also reads host masks (0.0.0.255); proxy-addr takes only netmasks.
    return network.prefixlen if str(network.netmask) == text else None


def parse_networks(text: str) -> tuple[Network, ...]:
    """A comma-separated proxy list; empty items are ignored. Raises TrustError."""
    networks: list[Network] = []
    for item in text.split(","):
        if item.strip():
            networks.extend(parse_network(item))
    return tuple(dict.fromkeys(networks))


def _mapped(address: Address) -> Address | None:
    """The same address in the other family, where one exists (IPv4 <-> IPv4-mapped IPv6)."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}")
    return address.ipv4_mapped


class TrustedProxies:
    """A set of trusted networks; ``trusted(address)`` is cached per address string."""

    LOOPBACK: tuple[Network, ...] = parse_networks("loopback")
    MENDHAK_DEFAULT: tuple[Network, ...] = parse_networks("loopback, linklocal, uniquelocal")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self.trusted = lru_cache(maxsize=1024)(self._trusted)
        self._chains = lru_cache(maxsize=1024)(self._chain)

    def _trusted(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        other = _mapped(address)
        for network in self.networks:
            if address.version == network.version:
                if address in network:
                    return True
            elif other is not None and other in network:
                return True
        return False

    def client_addresses(self, peer: str | None, forwarded_for: str | None) -> tuple[str | None, list[str]]:
        """Express's (req.ip, req.ips) for a peer address and an X-Forwarded-For value."""
        if peer is None:
            return None, []
        if not forwarded_for or not self.trusted(peer):
            return peer, []
        ip, ips = self._chains(peer, forwarded_for)
        return ip, list(ips)

    def _chain(self, peer: str, forwarded_for: str) -> tuple[str, tuple[str, ...]]:
        hops = [hop.strip(" ") for hop in reversed(forwarded_for.split(","))]
        chain = [peer]
        for hop in hops:
            if not hop:
                continue
            chain.append(hop)
            if not self.trusted(hop):
                break
        return chain[-1], tuple(reversed(chain[1:]))
