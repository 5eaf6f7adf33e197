"""Registry credentials: where they are read from, and the WWW-Authenticate challenge flow."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from summon.errors import UserError
from summon.store.auth import (
    AuthError,
    Credentials,
    RegistryAuth,
    auth_files,
    find_credentials,
    is_loopback,
    parse_challenge,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_files_are_read_in_the_containers_auth_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "explicit.json"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert auth_files() == [
        tmp_path / "explicit.json",
        tmp_path / "run" / "containers" / "auth.json",
        tmp_path / "config" / "containers" / "auth.json",
        tmp_path / "docker" / "config.json",
    ]
    # The first file with an entry for the registry wins, a later one is not consulted.
    docker = {"auths": {"reg.example:5000": {"auth": b64("d:1")}}}
    write(tmp_path / "docker" / "config.json", docker)
    assert find_credentials("reg.example:5000", "team/http") == Credentials(
        "d", "1", tmp_path / "docker" / "config.json"
    )
    write(
        tmp_path / "run" / "containers" / "auth.json",
        {"auths": {"reg.example:5000": {"auth": b64("podman:pw:with:colons")}}},
    )
    creds = find_credentials("reg.example:5000", "team/http")
    assert creds is not None and (creds.username, creds.password) == ("podman", "pw:with:colons")
    assert find_credentials("other.example", "team/http") is None


def test_key_spellings_and_repository_scoped_entries(tmp_path: Path) -> None:
    f = write(
        tmp_path / "auth.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:1")},
                "https://reg.example/": {"username": "plain", "password": "2"},
                "reg.example/team": {"auth": b64("team:3")},
            }
        },
    )
    hub = find_credentials("docker.io", "library/python", [f])
    assert hub is not None and hub.username == "hub"
    assert find_credentials("reg.example", "team/http", [f]).username == "team"  # type: ignore[union-attr]
    assert find_credentials("reg.example", "other/http", [f]).username == "plain"  # type: ignore[union-attr]
    assert find_credentials("reg.example", "teamster/x", [f]).username == "plain"  # type: ignore[union-attr]


def test_broken_files_name_the_file_never_the_secret(tmp_path: Path) -> None:
    bad = tmp_path / "auth.json"
    bad.write_text("{not json")
    with pytest.raises(AuthError, match=r"auth\.json is not valid JSON"):
        find_credentials("reg.example", "x", [bad])
    write(bad, {"auths": {"reg.example": {"auth": "c2VjcmV0LW5vLWNvbG9u"}}})  # "secret-no-colon"
    with pytest.raises(AuthError) as e:
        find_credentials("reg.example", "x", [bad])
    assert "not user:password" in str(e.value) and "secret" not in str(e.value)
    creds = Credentials("u", "hunter2", bad)
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/http:pull,push",error="insufficient_scope"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:team/http:pull,push",
        "error": "insufficient_scope",
    }
    basic = parse_challenge('Basic realm="basic-realm"')
    assert basic is not None and basic.scheme == "basic" and basic.params["realm"] == "basic-realm"
    assert parse_challenge("") is None


def test_loopback() -> None:
    for host in ("localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "[::1]:5000"):
        assert is_loopback(host), host
    for host in ("registry.example", "10.0.0.1:5000", "example.com:443"):
        assert not is_loopback(host), host


CREDS = Credentials("alice", "s3cret", Path("/etc/auth.json"))


def registry_transport(challenge: str, token_status: int = 200) -> httpx.MockTransport:
    """A registry that wants Basic alice:s3cret, or a bearer token from its realm."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            if request.headers.get("authorization") != CREDS.basic():
                return httpx.Response(401)
            assert request.url.params.get_list("scope") == ["repository:team/http:pull"]
            return httpx.Response(token_status, json={"token": "T0KEN"})
        auth = request.headers.get("authorization")
        if auth in (CREDS.basic(), "Bearer T0KEN"):
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    "challenge",
    [
        'Basic realm="r"',
        'Bearer realm="https://reg.example/token",service="reg",scope="repository:team/http:pull"',
    ],
)
def test_challenge_flow_logs_in_once(challenge: str) -> None:
    auth = RegistryAuth("reg.example", CREDS, insecure=False)
    with httpx.Client(transport=registry_transport(challenge), auth=auth) as client:
        assert client.get("https://reg.example/v2/").status_code == 200
        # The answer is remembered: the next request carries it without a new challenge.
        r = client.get("https://reg.example/v2/team/http/tags/list")
        assert r.status_code == 200 and len(r.history) == 0


@pytest.mark.parametrize(
    "challenge",
    [
        'Basic realm="r"',
        'Bearer realm="https://reg.example/token",service="reg",scope="repository:team/http:pull"',
    ],
)
def test_refused_or_missing_credentials_are_one_clear_line(challenge: str) -> None:
    wrong = Credentials("alice", "wrong-password", Path("/home/a/.docker/config.json"))
    with httpx.Client(
        transport=registry_transport(challenge),
        auth=RegistryAuth("reg.example", wrong, insecure=False),
    ) as client:
        with pytest.raises(AuthError) as e:
            client.get("https://reg.example/v2/")
    message = str(e.value)
    assert "refused the credentials from /home/a/.docker/config.json" in message
    assert "wrong-password" not in message and "\n" not in message
    with httpx.Client(
        transport=registry_transport(challenge),
        auth=RegistryAuth("reg.example", None, insecure=False),
    ) as client:
        with pytest.raises(AuthError, match="asks for a login and no credentials"):
            client.get("https://reg.example/v2/")


def test_credentials_never_go_to_a_plain_http_token_server() -> None:
    challenge = 'Bearer realm="http://evil.example/token",service="reg"'
    with httpx.Client(
        transport=registry_transport(challenge),
        auth=RegistryAuth("reg.example", CREDS, insecure=False),
    ) as client:
        with pytest.raises(AuthError, match="plain HTTP"):
            client.get("https://reg.example/v2/")


def test_a_token_server_sending_without_end_is_refused() -> None:
    """A hostile registry's token server cannot fill summon's memory (was: read whole)."""

    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(1024):  # 64 MiB of it, where a token is a few kB
                yield b"x" * 65536

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, stream=Endless())
        challenge = 'Bearer realm="https://reg.example/token"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with httpx.Client(
        transport=httpx.MockTransport(handle),
        auth=RegistryAuth("reg.example", CREDS, insecure=False),
    ) as client:
        with pytest.raises(AuthError, match=r"\(reg.example\) sent more than 1048576 bytes"):
            client.get("https://reg.example/v2/")


def test_a_busy_token_server_is_waited_out_and_said() -> None:
    """A token server answering 429 (or 503) is asked again after the wait it asks for, as
    the registry itself is (retry.py); was: the login failed at once with "answered 429"."""
    slept: list[float] = []
    busy = [429, 503]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            if busy:
                return httpx.Response(busy.pop(0), headers={"Retry-After": "3"})
            return httpx.Response(200, json={"token": "T0KEN"})
        if request.headers.get("authorization") == "Bearer T0KEN":
            return httpx.Response(200, json={})
        challenge = 'Bearer realm="https://reg.example/token"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    said: list[str] = []
    auth = RegistryAuth(
        "reg.example", CREDS, insecure=False, notice=said.append, sleep=slept.append
    )
    with httpx.Client(transport=httpx.MockTransport(handle), auth=auth) as client:
        assert client.get("https://reg.example/v2/").status_code == 200
    assert slept == [3.0, 3.0]
    assert said[0] == (
        "registry reg.example answered 429 (too many requests) while logging in at "
        "reg.example: trying again in 3s (try 2 of 4)"
    )


def test_a_token_server_that_stays_busy_is_one_clear_line() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(503)
        challenge = 'Bearer realm="https://reg.example/token"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    auth = RegistryAuth(
        "reg.example", CREDS, insecure=False, notice=lambda line: None, sleep=lambda s: None
    )
    with httpx.Client(transport=httpx.MockTransport(handle), auth=auth) as client:
        with pytest.raises(UserError) as e:
            client.get("https://reg.example/v2/")
    assert str(e.value) == (
        "registry reg.example answered 503 (service unavailable) while logging in at "
        "reg.example, 4 times over 7s; try again later"
    )


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://storage.example/upload/1",  # another server (object storage, or a hostile pick)
        "http://reg.example/v2/team/http/blobs/uploads/1",  # the registry, but in the clear
        "https://reg.example:8443/v2/team/http/blobs/uploads/1",  # another port of it
    ],
)
def test_credentials_and_tokens_go_to_the_registrys_own_server_only(elsewhere: str) -> None:
    """An upload's Location may name any URL; the password or token that the registry's
    challenge got went along to it, to another host or over plain HTTP."""
    seen: dict[str, str | None] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        if request.url.host == "reg.example" and request.url.port is None:
            if request.headers.get("authorization") != CREDS.basic():
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(202, headers={"Location": elsewhere})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="storage"'})

    auth = RegistryAuth("reg.example", CREDS, insecure=False)
    with httpx.Client(transport=httpx.MockTransport(handle), auth=auth) as client:
        r = client.post("https://reg.example/v2/team/http/blobs/uploads/")
        assert seen["https://reg.example/v2/team/http/blobs/uploads/"] == CREDS.basic()
        answer = client.put(r.headers["location"])
    assert seen[elsewhere] is None
    assert answer.status_code == 401  # its refusal is the caller's to report, not a login


def test_a_registry_on_a_named_api_host_gets_its_credentials() -> None:
    """docker.io's API is at registry-1.docker.io: that host is the registry's own."""
    auth = RegistryAuth("docker.io", CREDS, insecure=False, host="registry-1.docker.io")
    transport = registry_transport('Basic realm="r"')
    with httpx.Client(transport=transport, auth=auth) as client:
        assert client.get("https://registry-1.docker.io/v2/").status_code == 200
