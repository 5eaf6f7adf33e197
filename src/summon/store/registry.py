"""Push and pull images between the local store and registries that speak the OCI distribution API.

The wire protocol is the OCI distribution spec (v1.1) over httpx: blobs are HEAD-checked and
uploaded (monolithic PUT, or PATCH chunks for big ones) before the manifests that name them,
manifests before the index, the index last, so a registry never holds a tag whose content is
missing. Referrers (signatures) go up after their subject, through the referrers API or, when
the registry has none, the referrers tag scheme (an index at tag `sha256-<hex>`).

A pull checks every manifest and blob against the digest and size its parent names, while it
streams. Blobs wait uncommitted in Store.writer() temporaries until everything has arrived,
then go in, manifests after them, the tag last: a failed or interrupted pull leaves no tag and
no partial blob behind.

Every failure a user can meet (registry down, TLS trouble, auth refused, garbage reply, digest
mismatch) is a RegistryError, AuthError or CorruptBlob: one line, exit status 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

import summon
from summon.errors import CorruptBlob, UserError
from summon.store.auth import AuthError, RegistryAuth, find_credentials, is_loopback
from summon.store.layout import INDEX, MANIFEST, BlobWriter, Descriptor, Store, normalize_ref

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (INDEX, MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
# Registries may refuse manifests over 4 MiB (distribution spec); we refuse to read bigger ones.
MAX_MANIFEST = 4 << 20
CHUNK = 8 << 20  # blobs bigger than this go up in PATCH chunks of this size
_READ = 1 << 16
MAX_DEPTH = 4  # index -> manifest -> blobs is 2; deeper nesting is refused as garbage


class RegistryError(UserError):
    """The registry is unreachable, answered something unusable, or refused the operation."""


# references


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


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
        if not _HOST_RE.match(host):
            raise UserError(f"{ref!r}: {host!r} is not a registry host[:port]")
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


# progress


@dataclass(frozen=True)
class Transfer:
    """One step of one blob's journey, for a progress display."""

    digest: str
    media_type: str
    done: int  # bytes so far
    total: int
    state: str  # "start", "progress", "exists" (skipped: the other side has it), "done"


ProgressFn = Callable[[Transfer], None]


def _no_progress(t: Transfer) -> None:
    pass


# the wire


def _distribution_errors(response: httpx.Response) -> str:
    """`CODE: message` from a distribution-spec error body, or '' if it is not one."""
    try:
        body = (
            response.content
            if response.is_stream_consumed
            else _read_capped(response, 1 << 16, "", "")
        )
        doc = json.loads(body)
        items = doc["errors"]
        return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in items)
    except Exception:  # any body that is not the spec's error JSON
        return ""


class Registry:
    """An HTTP session with one repository of one registry."""

    def __init__(self, ref: RemoteRef, *, insecure: bool = False, timeout: float = 30.0) -> None:
        self.ref = ref
        self.name = ref.registry
        plain = insecure or is_loopback(ref.api_host)
        self.scheme = "http" if plain else "https"
        creds = find_credentials(ref.registry, ref.repository)
        self._http = httpx.Client(
            base_url=f"{self.scheme}://{ref.api_host}",
            auth=RegistryAuth(ref.registry, creds, insecure=plain),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,  # blob GETs are often redirected to object storage
            verify=ssl.create_default_context(),  # the system's CAs, as podman and docker use
            headers={"User-Agent": f"summon/{summon.__version__}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _repo(self) -> str:
        return f"/v2/{self.ref.repository}"

    @contextlib.contextmanager
    def _wire(self, what: str) -> Iterator[None]:
        """Turns transport failures into one line naming the registry and what we were doing."""
        where = f"registry {self.name}"
        try:
            yield
        except httpx.ConnectError as e:
            cause = str(e) or type(e).__name__
            if "CERTIFICATE_VERIFY_FAILED" in cause or "SSL" in cause:
                raise RegistryError(
                    f"TLS with {where} failed while {what} ({_short(cause)}); for a registry "
                    "without TLS use --insecure"
                ) from None
            raise RegistryError(
                f"cannot reach {where} while {what}: {_short(cause)} (is it running, is the "
                "address right?)"
            ) from None
        except httpx.TimeoutException:
            raise RegistryError(f"{where} did not answer in time while {what}") from None
        except (httpx.RemoteProtocolError, httpx.DecodingError) as e:
            raise RegistryError(
                f"{where} sent a broken reply while {what} ({_short(str(e))}); is it a registry?"
            ) from None
        except httpx.TransportError as e:
            cause = _short(str(e)) or type(e).__name__
            raise RegistryError(f"the connection to {where} failed while {what}: {cause}") from None
        except httpx.InvalidURL as e:
            raise RegistryError(f"{where} sent an unusable URL while {what}: {e}") from None

    def _fail(self, response: httpx.Response, what: str) -> UserError:
        status = response.status_code
        detail = _distribution_errors(response)
        if status == 403:
            return AuthError(
                f"registry {self.name} denied {what} (403{': ' + detail if detail else ''}); "
                "do these credentials have the right to do it?"
            )
        return RegistryError(
            f"registry {self.name} answered {status} while {what}"
            + (f": {_short(detail)}" if detail else "")
        )

    def request(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        """One request whose whole reply is read, up to MAX_MANIFEST bytes (no blob bodies)."""
        with self._wire(what), self._http.stream(method, url, **kw) as response:
            body = _read_capped(response, MAX_MANIFEST, f"registry {self.name}", what)
        # A read reply, decoded as its headers say, like any other httpx.Response.
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=response.request
        )

    def ping(self) -> None:
        """GET /v2/: proves it is a registry and gets the login out of the way."""
        response = self.request("GET", "/v2/", "checking it speaks the registry API")
        if response.status_code != 200:
            raise self._fail(response, "checking it speaks the registry API")

    # manifests

    def get_manifest(
        self, reference: str, expect: Descriptor | None = None
    ) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest; checked against EXPECT or a digest ref."""
        what = f"fetching manifest {reference} of {self.ref.repository}"
        response = self.request(
            "GET",
            f"{self._repo}/manifests/{reference}",
            what,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if response.status_code == 404:
            raise RegistryError(
                f"registry {self.name} has no {self.ref.repository}:{reference}"
                if not reference.startswith("sha256:")
                else f"registry {self.name} has no manifest {reference} in {self.ref.repository}"
            )
        if response.status_code != 200:
            raise self._fail(response, what)
        body = response.content
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"registry {self.name} sent a {len(body)}-byte manifest; refused")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        wanted = expect.digest if expect else (reference if reference.startswith("sha256:") else "")
        if wanted and digest != wanted:
            raise CorruptBlob(
                f"manifest {wanted} from registry {self.name} hashes to {digest}; refused"
            )
        if expect and expect.size != len(body):
            raise CorruptBlob(
                f"manifest {expect.digest} from registry {self.name} is {len(body)} bytes, "
                f"its descriptor says {expect.size}; refused"
            )
        header = response.headers.get("docker-content-digest")
        if not wanted and header and header != digest:
            raise CorruptBlob(
                f"registry {self.name} says {self.ref.repository}:{reference} is {header}, "
                f"but what it sent hashes to {digest}; refused"
            )
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RegistryError(
                f"registry {self.name} sent a manifest for {reference} that is not JSON; "
                "is it a registry?"
            ) from None
        media_type = doc.get("mediaType") if isinstance(doc, dict) else None
        if not isinstance(media_type, str):
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return body, media_type, digest

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> httpx.Response:
        what = f"uploading manifest {reference} to {self.ref.repository}"
        response = self.request(
            "PUT",
            f"{self._repo}/manifests/{reference}",
            what,
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, what)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        header = response.headers.get("docker-content-digest")
        if header and header != digest:
            raise RegistryError(
                f"registry {self.name} stored manifest {digest} under digest {header}"
            )
        return response

    def referrers(self, digest: str, artifact_type: str) -> list[Descriptor]:
        """The manifests whose subject is DIGEST, through the referrers API or the tag scheme."""
        what = f"listing the referrers of {digest}"
        response = self.request(
            "GET",
            f"{self._repo}/referrers/{digest}",
            what,
            params={"artifactType": artifact_type},
            headers={"Accept": INDEX},
        )
        ctype = response.headers.get("content-type", "").split(";")[0].strip()
        if response.status_code == 200 and ctype == INDEX:
            doc = _json(response.content, f"the referrers of {digest} from {self.name}")
        else:
            # No referrers API (a 404, or a registry answering with something else): the
            # fallback is an index tagged with the digest, `sha256-<hex>`.
            doc = self.referrers_tag_index(digest)
        found = []
        for d in doc.get("manifests") or [] if isinstance(doc, dict) else []:
            desc = Descriptor.from_json(d, f"the referrers of {digest} from {self.name}")
            if desc.artifact_type == artifact_type:
                found.append(desc)
        return found

    def referrers_tag_index(self, digest: str) -> dict[str, Any]:
        tag = digest.replace(":", "-")
        what = f"fetching the referrers index {tag}"
        response = self.request(
            "GET", f"{self._repo}/manifests/{tag}", what, headers={"Accept": INDEX}
        )
        if response.status_code == 404:
            return {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
        if response.status_code != 200:
            raise self._fail(response, what)
        doc = _json(response.content, f"the referrers index {tag} from {self.name}")
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise RegistryError(f"registry {self.name}: tag {tag} is not a referrers index")
        return doc

    # blobs

    def has_blob(self, desc: Descriptor) -> bool:
        what = f"checking for blob {desc.digest}"
        response = self.request("HEAD", f"{self._repo}/blobs/{desc.digest}", what)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, what)

    def upload_blob(
        self, store: Store, desc: Descriptor, progress: ProgressFn, chunk: int = CHUNK
    ) -> None:
        """Send one local blob, read through the store's digest check."""
        what = f"uploading blob {desc.digest}"
        response = self.request("POST", f"{self._repo}/blobs/uploads/", what)
        if response.status_code != 202 or "location" not in response.headers:
            raise self._fail(response, what)
        location = self._location(response)
        progress(Transfer(desc.digest, desc.media_type, 0, desc.size, "start"))
        done = 0
        try:
            with store.open_verified(desc) as f:
                if desc.size <= chunk:
                    data = f.read(desc.size + 1)
                    if len(data) != desc.size:
                        raise CorruptBlob(
                            f"blob {desc.digest} is {len(data)} bytes in the store, its "
                            f"descriptor says {desc.size}"
                        )
                else:
                    data = b""
                    while piece := f.read(chunk):
                        end = done + len(piece) - 1
                        response = self.request(
                            "PATCH",
                            location,
                            what,
                            content=piece,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"{done}-{end}",
                            },
                        )
                        if response.status_code != 202:
                            raise self._fail(response, what)
                        location = (
                            self._location(response) if "location" in response.headers else location
                        )
                        done += len(piece)
                        progress(
                            Transfer(desc.digest, desc.media_type, done, desc.size, "progress")
                        )
            # The store's digest check passed when the with-block closed: only now commit.
            sep = "&" if "?" in location else "?"
            response = self.request(
                "PUT",
                f"{location}{sep}digest={desc.digest}",
                what,
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            if response.status_code != 201:
                raise self._fail(response, what)
        except BaseException:
            with contextlib.suppress(Exception):  # free the registry's upload session
                self._http.delete(location, timeout=5.0)
            raise
        progress(Transfer(desc.digest, desc.media_type, desc.size, desc.size, "done"))

    def _location(self, response: httpx.Response) -> str:
        return urljoin(str(response.request.url), response.headers["location"])

    def fetch_blob(self, desc: Descriptor, writer: BlobWriter, progress: ProgressFn) -> None:
        """Stream one blob into WRITER, checking its size as it comes and its digest at the end."""
        what = f"downloading blob {desc.digest}"
        progress(Transfer(desc.digest, desc.media_type, 0, desc.size, "start"))
        digest = hashlib.sha256()
        done = 0
        with (
            self._wire(what),
            self._http.stream("GET", f"{self._repo}/blobs/{desc.digest}") as response,
        ):
            if response.status_code == 404:
                raise RegistryError(
                    f"registry {self.name} lacks blob {desc.digest} that "
                    f"{self.ref.repository} names; the image there is incomplete"
                )
            if response.status_code != 200:
                raise self._fail(response, what)
            for piece in response.iter_raw(_READ):
                done += len(piece)
                if done > desc.size:
                    raise CorruptBlob(
                        f"blob {desc.digest} from registry {self.name} is longer than the "
                        f"{desc.size} bytes its descriptor says; refused"
                    )
                digest.update(piece)
                writer.write(piece)
                progress(Transfer(desc.digest, desc.media_type, done, desc.size, "progress"))
        if done != desc.size:
            raise CorruptBlob(
                f"blob {desc.digest} from registry {self.name} is {done} bytes, its "
                f"descriptor says {desc.size}; refused"
            )
        actual = "sha256:" + digest.hexdigest()
        if actual != desc.digest:
            raise CorruptBlob(
                f"blob {desc.digest} from registry {self.name} hashes to {actual}; refused"
            )
        progress(Transfer(desc.digest, desc.media_type, done, desc.size, "done"))


def _read_capped(response: httpx.Response, limit: int, where: str, what: str) -> bytes:
    """The raw body, refusing one longer than LIMIT: a hostile server cannot fill memory."""
    body = bytearray()
    for piece in response.iter_raw(_READ):
        body += piece
        if len(body) > limit:
            raise RegistryError(f"{where} sent more than {limit} bytes while {what}; refused")
    return bytes(body)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RegistryError(f"{what} is not JSON") from None


# the image graph


@dataclass
class _Graph:
    """An image's manifests (children before parents) and the blobs they name."""

    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)
    blobs: dict[str, Descriptor] = field(default_factory=dict)


def _children(doc: Any, where: str) -> tuple[list[Descriptor], list[Descriptor]]:
    """(manifests, blobs) a manifest or index names."""
    if not isinstance(doc, dict):
        raise CorruptBlob(f"{where} is not a JSON object")
    manifests = [Descriptor.from_json(d, where) for d in doc.get("manifests") or []]
    blobs = [Descriptor.from_json(d, where) for d in doc.get("layers") or []]
    if doc.get("config") is not None:
        blobs.append(Descriptor.from_json(doc["config"], where))
    return manifests, blobs


def _local_graph(store: Store, top: Descriptor, graph: _Graph, depth: int = 0) -> None:
    body = store.read(top)
    manifests, blobs = _children(_json_blob(body, top.digest), top.digest)
    if manifests and depth >= MAX_DEPTH:
        raise CorruptBlob(f"manifest {top.digest} nests too deep")
    for child in manifests:
        _local_graph(store, child, graph, depth + 1)
    for b in blobs:
        graph.blobs.setdefault(b.digest, b)
    if all(top.digest != d.digest for d, _ in graph.manifests):
        graph.manifests.append((top, body))


def _json_blob(body: bytes, digest: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptBlob(f"blob {digest} is not valid JSON") from None


# push


@dataclass(frozen=True)
class PushResult:
    ref: RemoteRef
    digest: str
    blobs_sent: int
    blobs_skipped: int
    bytes_sent: int
    referrers: int


def push(
    store: Store,
    local: str,
    remote: RemoteRef,
    *,
    insecure: bool = False,
    progress: ProgressFn = _no_progress,
    chunk: int = CHUNK,
    referrer_types: tuple[str, ...] = (),
) -> PushResult:
    """Send image LOCAL and its referrers of REFERRER_TYPES (signatures) to REMOTE's tag."""
    if remote.digest:
        raise UserError(f"push to a tag, not a digest: {remote}")
    _, top = store.resolve(local)
    graph = _Graph()
    _local_graph(store, top, graph)
    referrers: list[tuple[Descriptor, _Graph]] = []
    for desc in store.referrers(top.digest):
        if desc.artifact_type in referrer_types:
            g = _Graph()
            _local_graph(store, desc, g)
            referrers.append((desc, g))
    sent = skipped = nbytes = 0
    with Registry(remote, insecure=insecure) as reg:
        reg.ping()
        for g in (graph, *(g for _, g in referrers)):
            for blob in g.blobs.values():
                if reg.has_blob(blob):
                    skipped += 1
                    progress(Transfer(blob.digest, blob.media_type, blob.size, blob.size, "exists"))
                    continue
                reg.upload_blob(store, blob, progress, chunk)
                sent += 1
                nbytes += blob.size
        # Children by digest first, so the index never names something the registry lacks.
        for desc, body in graph.manifests[:-1]:
            reg.put_manifest(desc.digest, body, desc.media_type)
        top_desc, top_body = graph.manifests[-1]
        reg.put_manifest(remote.tag, top_body, top_desc.media_type)
        for desc, g in referrers:
            for child, body in g.manifests[:-1]:
                reg.put_manifest(child.digest, body, child.media_type)
            response = reg.put_manifest(desc.digest, g.manifests[-1][1], desc.media_type)
            # A registry with the referrers API says so with OCI-Subject; else keep the index
            # at the fallback tag up to date ourselves.
            if "oci-subject" not in response.headers:
                _add_to_referrers_tag(reg, top.digest, desc)
    return PushResult(remote, top.digest, sent, skipped, nbytes, len(referrers))


def _add_to_referrers_tag(reg: Registry, subject: str, desc: Descriptor) -> None:
    index = reg.referrers_tag_index(subject)
    manifests = [d for d in index["manifests"] if isinstance(d, dict)]
    if any(d.get("digest") == desc.digest for d in manifests):
        return
    entry = Descriptor(
        desc.media_type, desc.digest, desc.size, dict(desc.annotations), desc.artifact_type
    ).to_json()
    manifests.append(entry)
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    reg.put_manifest(subject.replace(":", "-"), body, INDEX)


# pull


@dataclass(frozen=True)
class PullResult:
    ref: RemoteRef
    local: str
    digest: str
    blobs_fetched: int
    blobs_present: int
    bytes_fetched: int
    referrers: int


class _Staging:
    """What a pull has fetched but not yet put in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.manifests: list[tuple[Descriptor, bytes]] = []
        self.writers: list[tuple[Descriptor, BlobWriter]] = []
        self.planned: set[str] = set()

    def commit(self) -> None:
        for desc, writer in self.writers:
            writer.commit(desc.media_type, expect=desc.digest)
        self.writers.clear()
        for desc, body in self.manifests:
            self.store.put_bytes(body, desc.media_type)

    def abort(self) -> None:
        for _, writer in self.writers:
            writer.abort()
        self.writers.clear()


def _remote_graph(
    reg: Registry,
    desc: Descriptor,
    body: bytes,
    staging: _Staging,
    progress: ProgressFn,
    counts: list[int],
    depth: int = 0,
) -> None:
    manifests, blobs = _children(_json_blob(body, desc.digest), f"manifest {desc.digest}")
    if manifests and depth >= MAX_DEPTH:
        raise RegistryError(f"registry {reg.name}: manifest {desc.digest} nests too deep")
    for child in manifests:
        if child.media_type not in (INDEX, MANIFEST):
            raise RegistryError(
                f"{reg.ref} holds a {child.media_type} manifest; summon pulls OCI images only"
            )
        child_body, _, _ = reg.get_manifest(child.digest, expect=child)
        _remote_graph(reg, child, child_body, staging, progress, counts, depth + 1)
    for blob in blobs:
        if blob.digest in staging.planned:
            continue
        staging.planned.add(blob.digest)
        if staging.store.has(blob.digest):
            counts[1] += 1
            progress(Transfer(blob.digest, blob.media_type, blob.size, blob.size, "exists"))
            continue
        writer = staging.store.writer()
        staging.writers.append((blob, writer))
        reg.fetch_blob(blob, writer, progress)
        counts[0] += 1
        counts[2] += blob.size
    staging.manifests.append((desc, body))


def pull(
    store: Store,
    remote: RemoteRef,
    *,
    insecure: bool = False,
    progress: ProgressFn = _no_progress,
    referrer_types: tuple[str, ...] = (),
    local: str | None = None,
) -> PullResult:
    """Fetch REMOTE and its referrers of REFERRER_TYPES; tag it locally (default: its name)."""
    local_name = normalize_ref(local) if local else remote.local_name
    staging = _Staging(store)
    counts = [0, 0, 0]  # blobs fetched, blobs already here, bytes fetched
    referrers: list[Descriptor] = []
    try:
        with Registry(remote, insecure=insecure) as reg:
            reg.ping()
            body, media_type, digest = reg.get_manifest(remote.reference)
            if media_type not in (INDEX, MANIFEST):
                raise RegistryError(
                    f"{remote} is a {media_type or 'untyped'} manifest, not an OCI image; "
                    "summon pulls OCI images"
                )
            top = Descriptor(media_type, digest, len(body))
            _remote_graph(reg, top, body, staging, progress, counts)
            for art in referrer_types:
                for desc in reg.referrers(digest, art):
                    if desc.media_type != MANIFEST:
                        continue
                    ref_body, _, _ = reg.get_manifest(desc.digest, expect=desc)
                    subject = (_json_blob(ref_body, desc.digest) or {}).get("subject") or {}
                    if subject.get("digest") != digest:
                        continue  # a referrers index that lies about its members
                    _remote_graph(reg, desc, ref_body, staging, progress, counts)
                    referrers.append(desc)
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    for desc in referrers:
        store.add_referrer(desc)
    store.tag(local_name, top)
    return PullResult(remote, local_name, digest, counts[0], counts[1], counts[2], len(referrers))
