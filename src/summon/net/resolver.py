"""Names to addresses for the direct stack: a stub resolver that owns the answer cache.

A Resolver asks the name servers for A records over the stack's own UDP (and again over TCP
when the reply comes back truncated), trying each server in turn with growing timeouts, and
keeps each answer for its TTL. The wire format (queries, the two-step reply parser) is
dns.py's; this module is the I/O around it and knows the stack only as a devices.Stack (any
Stack will do: open_udp, open_connection), so dns.py and stack.py do not import each other.
"""

from __future__ import annotations

import os

from summon.net.ipv4 import format_address, parse_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.devices import Stack, UDPEndpoint
    from summon.net.counters import Counters
    from summon.net.dns import Answer

CACHE_SIZE = 256  # names kept; past it the cache starts over (a stub's cache, not a server's)


class Resolver:
    """A stub resolver over `stack`, with its cache. `nameservers` may be set later (DHCP)."""

    __slots__ = ("_cache", "clock", "counters", "nameservers", "stack")

    def __init__(
        self,
        stack: Stack,
        counters: Counters,
        clock: Callable[[], float],
        nameservers: tuple[bytes, ...] = (),
    ) -> None:
        self.stack = stack
        self.counters = counters
        self.clock = clock
        self.nameservers = nameservers
        self._cache: dict[str, tuple[bytes, float]] = {}

    async def resolve(self, host: str) -> bytes:
        """The IPv4 address of `host`: a dotted quad as it is, a name through the name
        servers (A records, cached for their TTL). OSError (dns.ResolutionError) if it cannot
        be resolved."""
        try:
            return parse_address(host)
        except ValueError:
            pass
        from summon.net import dns  # a stack that never resolves a name never loads it

        key = host.lower().rstrip(".")
        cached = self._cache.get(key)
        if cached is not None and cached[1] > self.clock():
            return cached[0]
        if not self.nameservers:
            raise dns.ResolutionError(
                f"cannot resolve {host!r}: no name server (give dns=IP in SUMMON_NET, or DHCP)"
            )
        answer = await self.query(host, self.nameservers)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (answer.addresses[0], self.clock() + answer.ttl)
        self.counters.inc("dns__query__resolved")
        return answer.addresses[0]

    async def query(self, host: str, servers: tuple[bytes, ...]) -> Answer:
        """Ask each server in turn for the A records of `host` (no cache); ResolutionError if
        none answers with an address."""
        import asyncio

        from summon.net import dns

        dns.encode_name(host)  # ValueError now rather than a query nobody can answer
        last = "no reply"
        for timeout in dns.TIMEOUTS:
            for server in servers:
                ident = int.from_bytes(os.urandom(2), "big")
                query = dns.build_query(host, ident)
                endpoint = await self.stack.open_udp(0)
                try:
                    endpoint.sendto(query, (format_address(server), dns.DNS_PORT))
                    answer = await asyncio.wait_for(
                        self._first_valid(endpoint, server, ident, host), timeout
                    )
                except TimeoutError:
                    self.counters.inc("dns__query__timeout")
                    continue
                finally:
                    endpoint.close()
                if answer.truncated:
                    try:
                        answer = await asyncio.wait_for(self._over_tcp(server, host), timeout)
                    except (dns.DnsError, OSError, asyncio.IncompleteReadError) as e:
                        last = f"TCP fallback failed ({e})"
                        continue
                if answer.rcode == dns.RCODE_NXDOMAIN:
                    raise dns.ResolutionError(f"cannot resolve {host!r}: no such name (NXDOMAIN)")
                if answer.rcode:
                    last = dns.RCODE_NAMES.get(answer.rcode, f"rcode {answer.rcode}")
                    continue
                if not answer.addresses:
                    raise dns.ResolutionError(
                        f"cannot resolve {host!r}: the name has no IPv4 address"
                    )
                return answer
        raise dns.ResolutionError(
            f"cannot resolve {host!r}: {last} from {len(servers)} name server(s)"
        )

    async def _first_valid(
        self, endpoint: UDPEndpoint, server: bytes, ident: int, host: str
    ) -> Answer:
        from summon.net import dns

        expected = (format_address(server), dns.DNS_PORT)
        while True:
            data, source = await endpoint.recvfrom()
            if source != expected:
                self.counters.inc("dns__wrong_source__drop")
                continue
            try:
                return dns.parse_response(data, ident, host)
            except dns.DnsError as e:
                # Spoofed or stale: keep waiting for the real reply until the timeout.
                self.counters.inc(f"dns__{e.reason}__drop")

    async def _over_tcp(self, server: bytes, host: str) -> Answer:
        """RFC 7766: the query again over TCP, each message behind its 2-byte length."""
        from summon.net import dns

        ident = int.from_bytes(os.urandom(2), "big")
        query = dns.build_query(host, ident)
        reader, writer = await self.stack.open_connection(format_address(server), dns.DNS_PORT)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            return dns.parse_response(await reader.readexactly(size), ident, host)
        finally:
            writer.close()
