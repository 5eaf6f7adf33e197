"""One attack on the Piñata, run inside the attacker's network namespace (nsenter), as a
plain process: it prints one JSON line, {"got": base64 of every byte it received, after
decryption where it reached TLS, "error": what ended it}.

    python3 pinata_attacker.py MODE HOST PORT [options as JSON]

MODE:
- client: TLS client to HOST:PORT (the Piñata's port 10000), with {"cert", "key"} if given
  and {"version": "1.0"} to offer TLS 1.0 only (at security level 0, as an old client would).
- server: plain TCP to HOST:PORT (10002), then TLS as the server with {"cert", "key"}.
- callback: listen on 0.0.0.0:40001, connect to HOST:PORT (10001), and serve TLS with
  {"cert", "key"} to whatever connects back within {"wait"} seconds.
- raw: plain TCP, send {"hex"} bytes ({"drip"} seconds between bytes, for a slowloris), read
  to the end.
- rehello: a real TLS 1.2 ClientHello (made by the ssl module), then a second one on the same
  connection before the handshake is done: a renegotiation attempt.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import time
from typing import Any

TIMEOUT = 30.0


def read_all(conn: socket.socket | ssl.SSLSocket) -> bytes:
    got = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (ssl.SSLError, OSError):
            return got
        if not chunk:
            return got
        got += chunk


def client(host: str, port: int, opts: dict[str, Any]) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if opts.get("version") == "1.0":
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    if opts.get("cert"):
        ctx.load_cert_chain(opts["cert"], opts["key"])
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as tls:
            return read_all(tls)


def server_context(opts: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts["cert"], opts["key"])
    return ctx


def server(host: str, port: int, opts: dict[str, Any]) -> bytes:
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        with server_context(opts).wrap_socket(raw, server_side=True) as tls:
            return read_all(tls)


def callback(host: str, port: int, opts: dict[str, Any]) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 40001))
        listener.listen(4)
        listener.settimeout(float(opts.get("wait", 20)))
        with socket.create_connection((host, port), timeout=TIMEOUT) as knock:
            read_all(knock)  # the Piñata hangs up at once
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        with conn, server_context(opts).wrap_socket(conn, server_side=True) as tls:
            return read_all(tls)


def raw(host: str, port: int, opts: dict[str, Any]) -> bytes:
    data = bytes.fromhex(opts.get("hex", ""))
    drip = float(opts.get("drip", 0))
    with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
        try:
            if drip:
                for i in range(len(data)):
                    conn.sendall(data[i : i + 1])
                    time.sleep(drip)
            else:
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the Piñata hung up first: what it sent is what counts
        return read_all(conn)


def rehello(host: str, port: int, opts: dict[str, Any]) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    return raw(host, port, {"hex": (hello + hello).hex()})


def main() -> None:
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    run = {"client": client, "server": server, "callback": callback, "raw": raw,
           "rehello": rehello}[mode]  # fmt: skip
    got, error = b"", ""
    try:
        got = run(host, port, opts)
    except Exception as e:  # every way an attack ends is a result, not a crash
        error = f"{type(e).__name__}: {e}"
    print(json.dumps({"got": base64.b64encode(got).decode(), "error": error}))


if __name__ == "__main__":
    main()
