"""The Piñata: a bounty that gives its secret to any peer whose certificate chains to a trust
anchor whose private key was destroyed when the Piñata was set up (setup.py), so nobody ever
should get it. Three ways to try, as MirageOS's BTC Piñata had:

- port 10000: a TLS server that requires a client certificate; on success it sends the
  secret and hangs up.
- port 10001: plain TCP; it hangs up at once and connects back, over TLS as the client, to
  port 40001 of the address that connected, and sends the secret there.
- port 10002: plain TCP, on which the Piñata starts a TLS handshake as the client, then
  sends the secret.

In every role the peer's chain must reach the one trust anchor (the secret pinata-ca.crt);
as a client the Piñata also requires the peer's certificate to name the peer's own address
(an IP SAN), so a certificate issued for another host is refused too. Each attempt is one
log line naming the port, the peer and how it ended; port 8080 shows the counts (tally.py).

Secrets (given at run time, never in the image): pinata.crt and pinata.key (its own chain
and key, both roles), pinata-ca.crt (the trust anchor), and optionally bounty (the secret
it guards; without it one is drawn at start and lives only in this process's memory).
"""

from __future__ import annotations

import asyncio

from tally import STATUS_PORT, Tally, serve_status

from summon.devices import TLS, Console, MissingSecret, Random, Secrets, Stack
from summon.tls.errors import TLSError

SERVER_PORT = 10000
CONNECT_BACK_PORT = 10001
CLIENT_PORT = 10002
CALL_BACK_TO = 40001  # the port of the initiating host the Piñata connects back to
HANDSHAKE_TIMEOUT = 10.0  # seconds a whole handshake may take (slowloris)
CONNECT_TIMEOUT = 5.0  # seconds to reach a peer for a connect-back
MAX_ATTEMPTS = 64  # attempts handled at once; more are refused at once ("busy")
OWN_CERT, OWN_KEY, TRUST_ANCHOR, BOUNTY = "pinata.crt", "pinata.key", "pinata-ca.crt", "bounty"


class Pinata:
    """The three roles, over one Stack and one TLS device; every attempt is tallied."""

    def __init__(self, stack: Stack, tls: TLS, bounty: bytes, log: Console, tally: Tally) -> None:
        self.stack = stack
        self.bounty = bounty
        self.log = log
        self.tally = tally
        self.busy = asyncio.Semaphore(MAX_ATTEMPTS)
        # Every context reads its secrets now, so a missing or broken one fails at start.
        self.server = tls.server(
            cert=OWN_CERT,
            key=OWN_KEY,
            client_auth="required",
            client_ca=TRUST_ANCHOR,
            handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        self.client = tls.client(
            ca=TRUST_ANCHOR, cert=OWN_CERT, key=OWN_KEY, handshake_timeout=HANDSHAKE_TIMEOUT
        )

    async def serve(self) -> None:
        roles = {
            SERVER_PORT: self.as_server,
            CONNECT_BACK_PORT: self.connect_back,
            CLIENT_PORT: self.as_client,
        }
        servers = [
            await self.stack.start_server(self._attempt(port, role), port)
            for port, role in roles.items()
        ]
        servers.append(await serve_status(self.stack, self.tally))
        self.log.info(
            f"pinata: guarding a {len(self.bounty)}-byte secret on ports "
            f"{', '.join(str(p) for p in roles)}; counts on port {STATUS_PORT}"
        )
        await asyncio.gather(*(s.serve_forever() for s in servers))

    def _attempt(self, port: int, role: Role) -> Handler:
        async def attempt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = _peer(writer)
            if self.busy.locked():
                writer.close()
                self._end(port, peer, "busy", "too many attempts at once")
                return
            async with self.busy:
                try:
                    outcome, detail = await role(reader, writer, peer)
                except TLSError as e:
                    outcome, detail = f"refused: {e.reason}", str(e)
                except (OSError, EOFError, asyncio.IncompleteReadError) as e:
                    outcome, detail = "lost", f"{type(e).__name__}: {e}"
                finally:
                    writer.close()
                self._end(port, peer, outcome, detail)

        return attempt

    def _end(self, port: int, peer: str, outcome: str, detail: str) -> None:
        self.tally.count(port, outcome)
        self.log.info(f"pinata: {port} from {peer}: {outcome} ({detail})")

    async def as_server(self, reader: Reader, writer: Writer, peer: str) -> Outcome:
        """Port 10000: the peer is the TLS client and must present a certificate."""
        _, tls_writer = await self.server.wrap(reader, writer)
        return await self._give(tls_writer)

    async def as_client(self, reader: Reader, writer: Writer, peer: str) -> Outcome:
        """Port 10002: the Piñata starts TLS as the client over the peer's own connection."""
        _, tls_writer = await self.client.wrap(reader, writer, server_hostname=_host(peer))
        return await self._give(tls_writer)

    async def connect_back(self, reader: Reader, writer: Writer, peer: str) -> Outcome:
        """Port 10001: hang up, then call the peer's port 40001 as a TLS client."""
        writer.close()
        host = _host(peer)
        try:
            back_reader, back_writer = await asyncio.wait_for(
                self.stack.open_connection(host, CALL_BACK_TO), CONNECT_TIMEOUT
            )
        except (TimeoutError, OSError) as e:
            return "no answer", f"connecting back to {host}:{CALL_BACK_TO}: {e or 'timed out'}"
        try:
            _, tls_writer = await self.client.wrap(back_reader, back_writer, server_hostname=host)
            return await self._give(tls_writer)
        finally:
            back_writer.close()

    async def _give(self, writer: Writer) -> Outcome:
        """The handshake verified the peer's chain to the trust anchor: the bounty is theirs."""
        writer.write(self.bounty + b"\n")
        await writer.drain()
        return "gave the secret", "the peer's certificate chains to the trust anchor"


def _peer(writer: Writer) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return "unknown peer"


def _host(peer: str) -> str:
    """The address of "host:port" (IPv4), which the peer's certificate must name."""
    return peer.rpartition(":")[0] or peer


def bounty_of(secrets: Secrets, random: Random, log: Console) -> bytes:
    """The secret to guard: the `bounty` secret, or one drawn now that lives only in memory."""
    try:
        value = secrets.get(BOUNTY).strip()
    except MissingSecret:
        value = b""
    if value:
        return value
    log.info("pinata: no bounty secret given: drew one that lives only in this process")
    return random.read(24).hex().encode()


async def main(stack: Stack, tls: TLS, secrets: Secrets, random: Random, log: Console) -> None:
    pinata = Pinata(stack, tls, bounty_of(secrets, random, log), log, Tally())
    await pinata.serve()


# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Reader = asyncio.StreamReader
    Writer = asyncio.StreamWriter
    Outcome = tuple[str, str]
    Role = Callable[[Reader, Writer, str], Awaitable[Outcome]]
    Handler = Callable[[Reader, Writer], Awaitable[None]]
