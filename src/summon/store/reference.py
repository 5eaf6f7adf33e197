"""Registry references (HOST[:PORT]/NAME[:TAG|@DIGEST]) and the registry client's error."""

from __future__ import annotations

import re
from dataclasses import dataclass

from summon.errors import UserError
from summon.store.layout import normalize_ref


class RegistryError(UserError):
    """The registry is unreachable, answered something unusable, or refused the operation."""


# references


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z"
)


def registry_problem(host: str) -> str:
    """Why host is not a registry's HOST[:PORT], or "" if it is one."""
    if not _HOST_RE.match(host):
        return f"{host!r} is not a registry host[:port]"
    port = re.search(r":([0-9]+)\Z", host)
    if port and not 1 <= int(port[1]) <= 65535:  # 99999 was an internal error (ValueError)
        return f"{host!r}: {port[1]} is not a port number (1-65535)"
    return ""


@dataclass(frozen=True)
class RemoteRef:
    """`registry/repository[:tag][@digest]`, e.g. `127.0.0.1:5000/team/http:v1`."""

    registry: str  # as the user wrote it: host[:port]; "docker.io" for Docker Hub
    repository: str  # team/http
    tag: str = "latest"
    digest: str = ""

    @classmethod
    def parse(cls, ref: str) -> RemoteRef:
        rest, _, digest = ref.partition("@")
        host, sep, path = rest.partition("/")
        if not sep or not ("." in host or ":" in host or host == "localhost"):
            raise UserError(
                f"{ref!r} names no registry; write REGISTRY/NAME[:TAG], "
                "e.g. 127.0.0.1:5000/team/http:v1 or docker.io/you/http:v1"
            )
        if why := registry_problem(host):
            raise UserError(f"{ref!r}: {why}")
        name, tag = path, ""
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = path.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise UserError(f"{ref!r}: {tag!r} is not a valid tag")
        if not _NAME_RE.match(name):
            raise UserError(
                f"{ref!r}: {name!r} is not a valid repository name (lowercase letters, digits, "
                "'.', '_', '-', separated by '/')"
            )
        if digest and not _DIGEST_RE.match(digest):
            raise UserError(f"{ref!r}: {digest!r} is not a sha256 digest")
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = "docker.io"
        if host == "docker.io" and "/" not in name:
            name = f"library/{name}"
        return cls(host, name, tag or ("" if digest else "latest"), digest)

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag

    @property
    def local_name(self) -> str:
        """The tag a pulled image gets in the local store."""
        tag = self.tag or self.digest[7:19]
        return normalize_ref(f"{self.registry}/{self.repository}:{tag}")

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
