"""Registry credentials: finding them in the usual auth.json files, and answering challenges.

Credentials come from the files podman, skopeo and docker already write, in the order
containers-auth.json(5) gives: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
$XDG_CONFIG_HOME/containers/auth.json, then docker's $DOCKER_CONFIG/config.json. The first file
with an entry for the registry wins. Secrets never reach a message, a log or an exception:
errors name the file, not what is in it.

RegistryAuth answers the distribution spec's WWW-Authenticate challenges (RFC 7235):
`Basic` gets the user and password, `Bearer realm=...,service=...,scope=...` gets a token from
the realm (with the user and password if there are any, anonymously if not), which is then
reused until a request needs a wider scope.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from summon.errors import UserError
from summon.store.credentials import helper_for, helper_get
from summon.store.retry import Notice, Retries, stderr_notice


class AuthError(UserError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


@dataclass(frozen=True)
class Credentials:
    """A user name and secret for one registry, and the file they came from (for messages)."""

    username: str
    password: str
    source: Path

    def __repr__(self) -> str:  # a repr must never leak the secret into a traceback or log
        return f"Credentials(source={str(self.source)!r})"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def auth_files() -> list[Path]:
    """The files credentials are read from, most specific first."""
    files: list[Path] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    files.append(Path(config_home) / "containers" / "auth.json")
    docker_dir = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    files.append(Path(docker_dir) / "config.json")
    return files


# What each way of writing a registry in an "auths" key stands for; docker's own hub key is a URL.
_HUB_KEYS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _key_location(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`; `host/ns/repo` stays (a repository-scoped entry)."""
    if "://" in key:
        parts = urlsplit(key)
        key = parts.netloc + parts.path
    key = key.rstrip("/")
    for suffix in ("/v1", "/v2"):
        key = key.removesuffix(suffix)
    host, sep, path = key.partition("/")
    if host in _HUB_KEYS:
        host = "docker.io"
    return host + sep + path


def find_credentials(
    registry: str, repository: str, files: list[Path] | None = None
) -> Credentials | None:
    """The credentials for REGISTRY (as written in image references) and REPOSITORY, or None.

    A repository-scoped entry (`host/team`) beats a registry-wide one in the same file.
    """
    registry = "docker.io" if registry in _HUB_KEYS else registry
    wanted = f"{registry}/{repository}"
    for path in auth_files() if files is None else files:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise AuthError(f"cannot read the credentials file {path}: {e.strerror}") from None
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AuthError(f"the credentials file {path} is not valid JSON") from None
        if isinstance(doc, dict) and (helper := helper_for(doc, registry)) is not None:
            found = helper_get(helper, registry)  # docker's credential helpers
            if found is not None:
                return Credentials(found[0], found[1], path)
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        best: tuple[int, object] | None = None
        for key, entry in auths.items():
            loc = _key_location(str(key))
            if loc == registry or wanted == loc or wanted.startswith(loc + "/"):
                if best is None or len(loc) > best[0]:
                    best = (len(loc), entry)
        if best is not None:
            creds = _entry_credentials(best[1], path, registry)
            if creds is not None:
                return creds
    return None


def _entry_credentials(entry: object, path: Path, registry: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise AuthError(f"the entry for {registry} in {path} is not an object")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(
                f'the entry for {registry} in {path} has an "auth" that is not base64 of '
                "user:password"
            ) from None
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise AuthError(
                f'the entry for {registry} in {path} has an "auth" that is not user:password'
            )
        return Credentials(user, password, path)
    if entry.get("username") and "password" in entry:
        return Credentials(str(entry["username"]), str(entry["password"]), path)
    return None  # e.g. only an identitytoken, which summon does not use


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]


# auth-param = token "=" ( token / quoted-string ), comma separated (RFC 7235 section 2.1)
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header, or None if it is not one."""
    m = re.match(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)", header)
    if not m:
        return None
    params: dict[str, str] = {}
    rest = header[m.end() :]
    pos = 0
    while pos < len(rest):
        pm = _PARAM_RE.match(rest, pos)
        if not pm or pm.end() == pos:
            break
        value = pm[2] if pm[2] is not None else pm[3]
        params[pm[1].lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = pm.end()
    return Challenge(m[1].lower(), params)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, with or without a port."""
    if host.startswith("["):  # [v6]:port
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# A token reply is a few kB (a JWT); a token server sending more is refused before it fills memory.
MAX_TOKEN_REPLY = 1 << 20


class _Capped(httpx.SyncByteStream):
    """A response stream that raises ERROR once more than LIMIT bytes came through it."""

    def __init__(self, stream: httpx.SyncByteStream, limit: int, error: Exception) -> None:
        self._stream, self._limit, self._error = stream, limit, error

    def __iter__(self) -> Iterator[bytes]:
        done = 0
        for piece in self._stream:
            done += len(piece)
            if done > self._limit:
                raise self._error
            yield piece

    def close(self) -> None:
        self._stream.close()


class RegistryAuth(httpx.Auth):
    """Answers one registry's 401 challenges; remembers the last Authorization that worked."""

    # httpx would read every response body (whole layers) if this were True; the flow reads
    # only the token response, itself.
    requires_response_body = False

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        insecure: bool,
        notice: Notice = stderr_notice,
        sleep: Callable[[float], None] = time.sleep,
        host: str = "",
    ) -> None:
        """notice: where a wait for a token server that asks for one (429, 503) is said;
        sleep: how it is waited; host: the registry's API server, HOST[:PORT] (default: the
        registry's name), the one server its credentials and tokens are sent to."""
        self.registry = registry
        self.server = urlsplit(f"//{host or registry}")
        self.credentials = credentials
        self.insecure = insecure
        self.notice = notice
        self.sleep = sleep
        self._authorization: str | None = None

    def _ours(self, url: httpx.URL) -> bool:
        """A request to the registry's own server, over TLS unless plain HTTP is allowed: an
        upload location elsewhere (object storage, or a hostile registry's pick, in the clear)
        gets neither the password nor a token."""
        if url.scheme != "https" and not self.insecure:
            return False
        default = 443 if url.scheme == "https" else 80
        return url.host == self.server.hostname and (url.port or default) == (
            self.server.port or default
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._ours(request.url):
            yield request  # as it is: its answer, 401 included, is the caller's to judge
            return
        if self._authorization and "authorization" not in request.headers:
            request.headers["Authorization"] = self._authorization
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            raise AuthError(
                f"registry {self.registry} refused the request (401) without saying how to log in"
            )
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._no_credentials()
            authorization = self.credentials.basic()
        elif challenge.scheme == "bearer":
            authorization = yield from self._bearer(challenge)
        else:
            raise AuthError(
                f"registry {self.registry} asks for {challenge.scheme} authentication, which "
                "summon does not speak (it speaks Basic and Bearer tokens)"
            )
        if authorization == request.headers.get("authorization"):
            raise self._refused()  # the same answer again would only be refused again
        self._authorization = authorization
        request.headers["Authorization"] = authorization
        response = yield request
        if response.status_code == 401:
            raise self._refused()

    def _bearer(self, challenge: Challenge) -> Generator[httpx.Request, httpx.Response, str]:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthError(
                f"registry {self.registry} sent a token challenge without a usable realm URL"
            )
        # Credentials go only over TLS, unless the token server is on this machine or the
        # user said the registry is insecure: a hostile registry must not harvest them.
        if parts.scheme == "http" and not (self.insecure or is_loopback(parts.netloc)):
            raise AuthError(
                f"registry {self.registry} sends us to a token server over plain HTTP "
                f"({parts.netloc}); refused (use --insecure if you trust it)"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        for scope in challenge.params.get("scope", "").split():
            params.append(("scope", scope))
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic()
        headers["Accept-Encoding"] = "identity"  # so the cap below is on what it means
        too_big = AuthError(
            f"the token server of registry {self.registry} ({parts.netloc}) sent more than "
            f"{MAX_TOKEN_REPLY} bytes; refused"
        )
        # A busy token server (429, 503) is waited out as a busy registry is (retry.py).
        retries = Retries(self.registry, f"logging in at {parts.netloc}", self.notice, self.sleep)
        while True:
            token_response = yield httpx.Request("GET", realm, params=params, headers=headers)
            if isinstance(token_response.stream, httpx.SyncByteStream):
                token_response.stream = _Capped(token_response.stream, MAX_TOKEN_REPLY, too_big)
            body = token_response.read()  # (read, not streamed: httpx reads it again after us)
            if len(body) > MAX_TOKEN_REPLY:
                raise too_big
            if not retries.again(
                token_response.status_code, token_response.headers.get("retry-after")
            ):
                break
        if token_response.status_code in (401, 403):
            raise self._refused() if self.credentials else self._no_credentials()
        if token_response.status_code != 200:
            raise AuthError(
                f"the token server of registry {self.registry} ({parts.netloc}) answered "
                f"{token_response.status_code}"
            )
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(
                f"the token server of registry {self.registry} ({parts.netloc}) sent no token"
            )
        return f"Bearer {token}"

    def _no_credentials(self) -> AuthError:
        return AuthError(
            f"registry {self.registry} asks for a login and no credentials for it were found; "
            "log in with `summon login` (or podman, skopeo or docker login: summon reads "
            "their files), or set REGISTRY_AUTH_FILE"
        )

    def _refused(self) -> AuthError:
        if self.credentials is None:
            return self._no_credentials()
        return AuthError(
            f"registry {self.registry} refused the credentials from {self.credentials.source}; "
            "log in again"
        )
