"""How summon trusts a registry's TLS: the system's CAs, the certs.d folders, and --ca-file.

One setup serves podman, docker, skopeo and summon alike: besides the system store (which
honours SSL_CERT_FILE and SSL_CERT_DIR), a registry's own CA certificates are read from the
folders those tools use, `certs.d/HOST:PORT/*.crt` under $XDG_CONFIG_HOME/containers,
/etc/containers and /etc/docker (a `client.cert` with its `client.key` there is presented as a
client certificate, as docker does). --ca-file adds one more CA for one command.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from summon.errors import UserError


def certs_dirs(host: str) -> list[Path]:
    """The certs.d folders for a registry host (HOST or HOST:PORT), most specific first."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    bases = [
        Path(config_home) / "containers" / "certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    ]
    return [base / host for base in bases if (base / host).is_dir()]


def context(host: str, ca_file: Path | None = None, verify: bool = True) -> ssl.SSLContext:
    """The TLS client context for a registry at host; verify=False for --insecure only."""
    if not verify:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        return insecure
    ctx = ssl.create_default_context()
    for folder in certs_dirs(host):
        for cert in sorted(folder.glob("*.crt")):
            _load(ctx, cert)
        client, key = folder / "client.cert", folder / "client.key"
        if client.is_file() and key.is_file():
            try:
                ctx.load_cert_chain(client, key)
            except (OSError, ssl.SSLError) as e:
                raise UserError(f"cannot use the client certificate in {folder}: {e}") from None
    if ca_file is not None:
        _load(ctx, ca_file)
    return ctx


def _load(ctx: ssl.SSLContext, cert: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(cert))
    except FileNotFoundError:
        raise UserError(f"--ca-file {cert}: no such file") from None
    except (OSError, ssl.SSLError) as e:
        raise UserError(f"{cert} is not a PEM CA certificate summon can use ({e})") from None
