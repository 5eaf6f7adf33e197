"""summon.tls against real peers over loopback: openssl s_client and s_server, curl, and
Python's own ssl, with both backends, TLS 1.2 and 1.3; then every attack in the issue's list,
each failing with its reason.

No image and no root: the device runs in this process under asyncio, the peers are Debian's
programs talking to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
import sys
from collections.abc import Awaitable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "tls"))
from tls_pki import PKI, build_pki

from summon.secrets import FolderSecrets
from summon.tls import errors as e
from summon.tls.device import TLSDevice

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)
BACKENDS = ("openssl", "python")
VERSIONS = ("1.2", "1.3")
OPENSSL_FLAG = {"1.2": "-tls1_2", "1.3": "-tls1_3"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(Path(tmp_path_factory.mktemp("pki")))


class Server:
    """Our device as a tiny HTTPS server on 127.0.0.1; records how each connection ended."""

    def __init__(self, tls: TLSDevice, **context: object) -> None:
        self.ctx = tls.server(**context)  # type: ignore[arg-type]
        self.outcomes: list[object] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reader, writer = await self.ctx.wrap(reader, writer)
            info = writer.get_extra_info("tls")
            request = await reader.readuntil(b"\r\n\r\n")
            peer = info.peer_certificate.subject if info.peer_certificate else "-"
            body = f"hello {info.version} {peer} {request.split()[1].decode()}\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            self.outcomes.append(info)
            writer.close()
            await writer.wait_closed()
        except e.TLSError as err:
            self.outcomes.append(err)
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            self.outcomes.append(err)
        finally:
            writer.close()  # also when the client left before its request: no socket leaks

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def outcome(self, timeout: float = 15) -> object:
        async with asyncio.timeout(timeout):
            while not self.outcomes:
                await asyncio.sleep(0.01)
        return self.outcomes[0]


def device(pki: PKI, backend: str) -> TLSDevice:
    return TLSDevice(FolderSecrets(str(pki.folder)), backend)


async def run(*cmd: str, stdin: bytes = b"", timeout: float = 30) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def go(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


GET = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"

# -- our server, real clients --------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_openssl_s_client_with_a_client_certificate(pki: PKI, backend: str, version: str) -> None:
    async def main() -> None:
        async with Server(device(pki, backend), client_auth="required", client_ca="ca.crt") as srv:
            code, out = await run(
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{srv.port}",
                "-servername",
                "localhost",
                "-verify_hostname",
                "localhost",
                "-CAfile",
                pki.path("ca"),
                "-verify_return_error",
                OPENSSL_FLAG[version],
                "-cert",
                pki.path("client"),
                "-key",
                pki.path("client", "key"),
                "-ign_eof",
                stdin=GET,
            )
            assert code == 0, out
            assert f"hello TLSv{version} CN=client one /x" in out
            assert "Verify return code: 0 (ok)" in out

    go(main())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_curl_with_cacert_and_with_k(pki: PKI, backend: str, version: str) -> None:
    flags = ["--tlsv1.2", "--tls-max", "1.2"] if version == "1.2" else ["--tlsv1.3"]

    async def main() -> None:
        async with Server(device(pki, backend), alpn=["http/1.1"]) as srv:
            url = f"https://localhost:{srv.port}/curl"
            code, out = await run(
                "curl",
                "-sS",
                "--cacert",
                pki.path("ca"),
                *flags,
                "--resolve",
                f"localhost:{srv.port}:127.0.0.1",
                url,
            )
            assert code == 0, out
            assert out == f"hello TLSv{version} - /curl\n"
            code, out = await run("curl", "-sSk", *flags, f"https://127.0.0.1:{srv.port}/k")
            assert code == 0, out
            assert out == f"hello TLSv{version} - /k\n"
            # Without the CA, curl refuses our certificate: the check is real on its side too.
            code, out = await run("curl", "-sS", *flags, f"https://127.0.0.1:{srv.port}/")
            assert code == 60, out

    go(main())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pythons_own_ssl_client(pki: PKI, backend: str, version: str) -> None:
    ctx = ssl.create_default_context(cafile=pki.path("ca"))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion[f"TLSv{version.replace('.', '_')}"]
    ctx.load_cert_chain(pki.path("client-ec"), pki.path("client-ec", "key"))

    async def main() -> None:
        async with Server(device(pki, backend), client_auth="optional", client_ca="ca.crt") as srv:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", srv.port, ssl=ctx, server_hostname="localhost"
            )
            writer.write(GET)
            body = await reader.read()
            assert body.endswith(f"hello TLSv{version} CN=client ec /x\n".encode())
            writer.close()

    go(main())


# -- our client, real servers --------------------------------------------------------------


async def s_server(pki: PKI, cert: str, *extra: str) -> tuple[asyncio.subprocess.Process, int]:
    """`openssl s_server -rev` (echoes each line reversed) on a free port."""
    for _ in range(20):
        port = random.Random().randrange(20000, 60000)
        proc = await asyncio.create_subprocess_exec(
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            pki.path(cert),
            "-key",
            pki.path(cert, "key"),
            "-rev",
            "-naccept",
            "1",
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        while line := await asyncio.wait_for(proc.stdout.readline(), 10):
            if b"ACCEPT" in line:
                return proc, port
        await proc.wait()  # it exited: most likely the port was taken
    raise RuntimeError("s_server found no free port")


async def _client_session(
    pki: PKI, backend: str, version: str, cert: str, hostname: str = "localhost", *extra: str
) -> bytes:
    proc, port = await s_server(pki, cert, OPENSSL_FLAG[version], *extra)
    try:
        ctx = device(pki, backend).client(ca="ca.crt", cert="client.crt", key="client.key")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await ctx.wrap(reader, writer, hostname)
        writer.write(b"summon\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return line
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_openssl_s_server_requiring_our_client_certificate(
    pki: PKI, backend: str, version: str
) -> None:
    async def main() -> None:
        line = await _client_session(
            pki,
            backend,
            version,
            "server-ec",
            "localhost",
            "-Verify",
            "1",
            "-CAfile",
            pki.path("ca"),
        )
        assert line == b"nommus\n"

    go(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_our_client_refuses_a_server_with_the_wrong_name(pki: PKI, backend: str) -> None:
    async def main() -> None:
        with pytest.raises(e.BadCertificate) as err:
            await _client_session(pki, backend, "1.3", "server-wrong-name")
        assert err.value.reason == e.HOSTNAME_MISMATCH

    go(main())


@pytest.mark.parametrize("old", ["-tls1", "-tls1_1"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_our_client_refuses_a_tls10_or_11_server(pki: PKI, backend: str, old: str) -> None:
    async def main() -> None:
        proc, port = await s_server(pki, "server-ec", old, "-cipher", "DEFAULT@SECLEVEL=0")
        try:
            ctx = device(pki, backend).client(ca="ca.crt")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(e.HandshakeFailure):
                await ctx.wrap(reader, writer, "localhost")
        finally:
            proc.kill()
            await proc.wait()

    go(main())


# -- attacks on our server: each fails with its reason ---------------------------------------


async def _s_client_against(srv: Server, pki: PKI, *args: str, stdin: bytes = GET) -> str:
    _, out = await run(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{srv.port}",
        "-servername",
        "localhost",
        "-CAfile",
        pki.path("ca"),
        *args,
        stdin=stdin,
    )
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (None, e.NO_CERTIFICATE),
        ("client-self-signed", e.SELF_SIGNED),
        ("client-other-ca", e.UNKNOWN_CA),
        ("client-expired", e.EXPIRED),
    ],
)
def test_bad_client_certificates_from_s_client(
    pki: PKI, backend: str, client: str | None, reason: str
) -> None:
    async def main() -> None:
        async with Server(device(pki, backend), client_auth="required", client_ca="ca.crt") as srv:
            args = ["-cert", pki.path(client), "-key", pki.path(client, "key")] if client else []
            out = await _s_client_against(srv, pki, *args)
            outcome = await srv.outcome()
            assert isinstance(outcome, e.BadCertificate), (outcome, out)
            assert outcome.reason == reason
            assert "hello" not in out  # the handler never answered

    go(main())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("flag", "version"), [("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")])
def test_tls10_and_11_clients_are_refused(pki: PKI, backend: str, flag: str, version: str) -> None:
    async def main() -> None:
        async with Server(device(pki, backend)) as srv:
            out = await _s_client_against(srv, pki, flag, "-cipher", "DEFAULT@SECLEVEL=0")
            outcome = await srv.outcome()
            assert isinstance(outcome, e.ProtocolVersionRefused), (outcome, out)
            assert outcome.version == version
            assert "alert protocol version" in out

    go(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_renegotiation_from_s_client_gets_a_warning_no_renegotiation(
    pki: PKI, backend: str
) -> None:
    """RFC 5246 7.2.2, RFC 5746 4.2: refused with a warning alert, the client's to judge;
    s_client gives up with a fatal handshake_failure. Before, the server hung up silently."""

    async def main() -> None:
        async with Server(device(pki, backend)) as srv:
            # "R" on a line of its own makes s_client renegotiate (TLS 1.2 only).
            out = await _s_client_against(srv, pki, "-tls1_2", "-msg", stdin=b"R\n")
            assert "RENEGOTIATING" in out
            assert "<<< TLS 1.2, Alert [length 0002], warning no_renegotiation" in out, out
            outcome = await srv.outcome()
            assert isinstance(outcome, e.TLSError), outcome
            assert "handshake_failure" in str(outcome)  # the client's answer to our alert

    go(main())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_s_client_offering_only_h2_gets_no_application_protocol(
    pki: PKI, backend: str, version: str
) -> None:
    """RFC 7301 3.2: a server speaking http/1.1 only refuses a client offering only h2 with
    a fatal no_application_protocol alert (before: a handshake with no protocol)."""

    async def main() -> None:
        async with Server(device(pki, backend), alpn=["http/1.1"]) as srv:
            out = await _s_client_against(srv, pki, OPENSSL_FLAG[version], "-alpn", "h2")
            assert "alert no application protocol" in out and "SSL alert number 120" in out
            outcome = await srv.outcome()
            assert isinstance(outcome, e.HandshakeFailure), (outcome, out)
            assert outcome.reason == e.NO_APPLICATION_PROTOCOL
            assert "hello" not in out
        async with Server(device(pki, backend), alpn=["http/1.1"]) as srv:
            alpn = "h2,http/1.1"
            out = await _s_client_against(srv, pki, OPENSSL_FLAG[version], "-alpn", alpn)
            assert "ALPN protocol: http/1.1" in out, out
            await srv.outcome()

    go(main())


def test_the_python_backend_refuses_finite_field_dh_groups(pki: PKI) -> None:
    """docs/tls.md: the python backend's groups are x25519, P-256, P-384. tlslite-ng also
    offered ffdhe2048..8192 in TLS 1.3, so a client offering only ffdhe8192 was served, at five
    times the server's CPU per handshake; it is refused, and a client offering ffdhe and x25519
    gets x25519."""

    async def main() -> None:
        async with Server(device(pki, "python")) as srv:
            out = await _s_client_against(srv, pki, "-tls1_3", "-groups", "ffdhe8192")
            assert "SSL alert number 40" in out, out  # handshake_failure
            assert isinstance(await srv.outcome(), e.HandshakeFailure)
        async with Server(device(pki, "python")) as srv:
            out = await _s_client_against(srv, pki, "-tls1_3", "-groups", "ffdhe2048:X25519")
            assert "Server Temp Key: X25519" in out, out
            await srv.outcome()

    go(main())


async def _raw(srv: Server, chunks: list[bytes], delay: float = 0.0) -> object:
    _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        writer.write_eof()
        return await srv.outcome(timeout=30)
    except ConnectionError:
        return await srv.outcome(timeout=30)
    finally:
        writer.close()


def _client_hello(pki: PKI) -> bytes:
    session = device(pki, "openssl").client(ca="ca.crt").session("localhost")
    session.start()
    return session.data_to_send()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated record", e.TRUNCATED_RECORD),
        ("oversized record", e.OVERSIZED_RECORD),
        ("random bytes", e.BAD_RECORD),
    ],
)
def test_truncated_oversized_and_random_input(
    pki: PKI, backend: str, name: str, reason: str
) -> None:
    hello = _client_hello(pki)
    chunks = {
        "truncated record": [hello[: len(hello) // 2]],
        "oversized record": [bytes([22, 3, 1, 0x48, 0x01]) + b"\0" * 64],
        "random bytes": [bytes([0x99]) + random.Random(13).randbytes(4000)],
    }[name]

    async def main() -> None:
        async with Server(device(pki, backend)) as srv:
            outcome = await _raw(srv, chunks)
            assert isinstance(outcome, e.ProtocolViolation), outcome
            assert outcome.reason == reason

    go(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_slowloris_handshake_times_out(pki: PKI, backend: str) -> None:
    """A real ClientHello, one byte per second: the handshake deadline ends it."""
    hello = _client_hello(pki)

    async def main() -> None:
        async with Server(device(pki, backend), handshake_timeout=2.5) as srv:
            # The server hangs up after 2.5 s; the next byte's write or drain then fails.
            outcome = await _raw(srv, [hello[i : i + 1] for i in range(20)], 1.0)
            assert isinstance(outcome, e.HandshakeTimeout), outcome
            assert outcome.seconds == 2.5

    go(main())
