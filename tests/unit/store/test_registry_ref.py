"""Registry references: what `summon push/pull` accept, and the local names they map to."""

from __future__ import annotations

import pytest

from summon.errors import UserError
from summon.store.layout import normalize_ref
from summon.store.reference import RemoteRef


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "local"),
    [
        ("127.0.0.1:5000/team/http:v1", "127.0.0.1:5000", "team/http", "v1", "",
         "127.0.0.1:5000/team/http:v1"),
        ("localhost:5000/http", "localhost:5000", "http", "latest", "",
         "localhost:5000/http:latest"),
        ("registry.example/a/b/c:1.0", "registry.example", "a/b/c", "1.0", "",
         "registry.example/a/b/c:1.0"),
        ("docker.io/python", "docker.io", "library/python", "latest", "",
         "docker.io/library/python:latest"),
        ("index.docker.io/you/http:v2", "docker.io", "you/http", "v2", "",
         "docker.io/you/http:v2"),
        ("127.0.0.1:5000/team/http@sha256:" + "a" * 64, "127.0.0.1:5000", "team/http", "",
         "sha256:" + "a" * 64, "127.0.0.1:5000/team/http:aaaaaaaaaaaa"),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str, digest: str,
               local: str) -> None:
    ref = RemoteRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry, repository, tag, digest
    )
    assert ref.reference == (digest or tag)
    assert ref.local_name == local
    assert RemoteRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http:v1", "names no registry"),
        ("team/http", "names no registry"),
        ("127.0.0.1:5000/Team/http", "not a valid repository name"),
        ("127.0.0.1:5000/team/http:", "not a valid tag"),
        ("127.0.0.1:5000/team/http@sha256:abc", "not a sha256 digest"),
        ("bad_host:5000/x", "is not a registry host"),
        # A port past 65535 was an internal error (ValueError from urllib) at pull and push.
        ("127.0.0.1:99999/team/http", "'127.0.0.1:99999': 99999 is not a port number"),
        ("localhost:0/team/http", "'localhost:0': 0 is not a port number"),
        ("localhost:١/team/http", "is not a registry host"),
    ],
)
def test_parse_refuses(text: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        RemoteRef.parse(text)


def test_local_names_may_carry_a_registry_with_a_port() -> None:
    assert normalize_ref("127.0.0.1:5000/team/http") == "127.0.0.1:5000/team/http:latest"
    assert normalize_ref("localhost:5000/http:v1") == "localhost:5000/http:v1"
    assert normalize_ref("registry.example/team/http:v1") == "registry.example/team/http:v1"
    for bad in ("127.0.0.1:x/http", "Http:v1", "host:5000/"):
        with pytest.raises(UserError):
            normalize_ref(bad)


def test_a_registry_at_an_ipv6_address_names_local_images_too() -> None:
    """docs/registry.md has plain HTTP for a registry on ::1, but `summon pull
    [::1]:5000/team/http:v1` was refused as 'not a valid image name' (the local tag it gets)
    before anything was sent, and `summon tag` refused the name as well."""
    remote = RemoteRef.parse("[::1]:5000/team/http:v1")
    assert remote.local_name == "[::1]:5000/team/http:v1"
    assert normalize_ref("[::1]:5000/team/http") == "[::1]:5000/team/http:latest"
    assert normalize_ref("[fd00::2]/team/http:v1") == "[fd00::2]/team/http:v1"
    for bad in ("[::1/http", "[::g]:5000/http", "[::1]:5000/Http"):
        with pytest.raises(UserError):
            normalize_ref(bad)
