"""Where a connection test may connect: which ports, and which addresses.

A connection test dials wherever a user points it, so without limits it is a
port scanner and a way into internal services and cloud metadata endpoints
(Apache Airflow turned its test button off for this, CVE-2023-37379). The host
is resolved once, every address is checked, and only checked addresses are
dialled (the TLS certificate is still verified against the host name), so a
DNS answer that changes between check and dial cannot slip through.
"""

import functools
import ipaddress
from dataclasses import dataclass

from . import protocols
from .causes import PLAINTEXT_NOT_ALLOWED, Failure

MAIL_PORTS = frozenset({993, 995, 143, 110})
HTTPS_PORT = 443

# Never reachable, whatever is configured: link-local (cloud metadata lives at 169.254.169.254), AWS's
# IPv6 metadata address, and 192.0.0.0/24 (IETF protocol assignments; Oracle's metadata is at 192.0.0.192).
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "192.0.0.0/24")
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215), IPv4-translated
# addresses of SIIT (RFC 6145 section 2.1, RFC 7915), and the deprecated IPv4-compatible form (RFC 4291 2.5.5.1).
# IPv4-mapped ::ffff:0:0/96 (RFC 4291 2.5.5.2), 6to4 and Teredo are read by the ipaddress module itself.
IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.ip_network(network) for network in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


class PolicyError(ValueError):
    """A port or network list in the configuration cannot be read."""


@dataclass(frozen=True)
class Policy:
    """Allowed destination `ports` (a frozenset of ints) and `networks` (ip_network objects) that may be
    reached although they are loopback or private; public addresses are always allowed. `plaintext`
    says whether a connection without TLS may be made at all."""

    ports: frozenset = MAIL_PORTS
    networks: tuple = ()
    plaintext: bool = False

    @classmethod
    def parse(cls, ports, networks, plaintext=False):
        """A Policy from configuration text: ports like ``"993,995,2000-2100"``, networks like
        ``"127.0.0.0/8, 10.1.0.0/16"``. Raises PolicyError naming the item it cannot read.

        The same text gives the same Policy, made once (a Policy cannot change): a range as wide as
        ``1-65535`` is a set of 65,535 ports, and every application built reads its configuration."""
        return cls._parse_text(str(ports), str(networks), bool(plaintext))

    @classmethod
    @functools.lru_cache(maxsize=32)
    def _parse_text(cls, ports, networks, plaintext):
        allowed = set()
        for item in filter(None, (part.strip() for part in ports.split(","))):
            low, _, high = item.partition("-")
            try:
                first, last = int(low), int(high or low)
            except ValueError:
                raise PolicyError(f"{item!r} is not a port or a range of ports") from None
            if not 1 <= first <= last <= 65535:
                raise PolicyError(f"{item!r} is not within 1-65535")
            allowed.update(range(first, last + 1))
        try:
            listed = tuple(ipaddress.ip_network(item.strip()) for item in networks.split(",") if item.strip())
        except ValueError as error:
            raise PolicyError(str(error)) from None
        return cls(frozenset(allowed), listed, plaintext)

    def port_problem(self, port):
        """Why `port` may not be dialled, or None."""
        if port not in self.ports:
            shown = ", ".join(str(p) for p in sorted(self.ports)[:8]) + (", ..." if len(self.ports) > 8 else "")
            return f"port {port} is not one of {shown}"
        return None

    def token_port_problem(self, port):
        """Why a token endpoint's `port` may not be dialled, or None: 443 (HTTPS) or an allowed port."""
        return None if port == HTTPS_PORT or port in self.ports else f"port {port} is neither 443 nor an allowed port"

    def address_problem(self, address):
        """Why the IP address text `address` may not be dialled, or None.

        An IPv6 address that carries an IPv4 one (mapped, translated, NAT64,
        6to4, Teredo, IPv4-compatible) must pass for both.
        """
        ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone index is not part of the address
        for each in (*_embedded_ipv4(ip), ip):  # the carried IPv4 address first: it names the real destination
            if any(each in network for network in FORBIDDEN_NETWORKS) or each.is_multicast or each.is_unspecified:
                return f"{each} is a link-local, metadata, multicast or unspecified address, never allowed"
            if not (any(each in network for network in self.networks) or each.is_global):
                return f"{each} is a private or loopback address"
        return None

    def check_security(self, security):
        """Raise Failure ``plaintext_refused`` for a connection without TLS unless plaintext is allowed."""
        if security == protocols.PLAINTEXT and not self.plaintext:
            raise Failure("plaintext_refused", field="security", message=PLAINTEXT_NOT_ALLOWED)

    def check_port(self, port):
        """Raise Failure ``destination_not_allowed``, blaming the port, unless `port` may be dialled."""
        problem = self.port_problem(port)
        if problem:
            raise Failure("destination_not_allowed", field="port", reason=problem)

    def check_addresses(self, addresses):
        """Raise Failure ``destination_not_allowed`` unless every address of `addresses`
        (``network.resolve`` pairs) may be dialled."""
        for _, sockaddr in addresses:
            problem = self.address_problem(sockaddr[0])
            if problem:
                raise Failure("destination_not_allowed", reason=problem)


def _embedded_ipv4(ip):
    """The IPv4 addresses an IPv6 address carries (none for an IPv4 address)."""
    # IPv6's own loopback and unspecified addresses (::1, ::) fall inside ::/96 but carry no IPv4 address.
    if ip.version == 4 or ip.is_loopback or ip.is_unspecified:
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in network for network in IPV4_IN_LAST_32_BITS) and int(ip) & 0xFFFFFFFF:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]
