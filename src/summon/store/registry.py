"""The registry client: one registry's OCI distribution API (v1.1) over httpx, request by request.

Blobs stream with their digest checked as they come; uploads are a monolithic PUT, or PATCH
chunks for big ones. sync.py orders these calls into whole pushes and pulls.

Every failure a user can meet (registry down, TLS trouble, auth refused, garbage reply, digest
mismatch) is a RegistryError, AuthError or CorruptBlob: one line, exit status 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

import summon
from summon.errors import CorruptBlob, UserError
from summon.store import deadline, tls
from summon.store.auth import (
    AuthError,
    Credentials,
    RegistryAuth,
    find_credentials,
    is_loopback,
)
from summon.store.layout import INDEX, MANIFEST, BlobWriter, Descriptor, Store
from summon.store.reference import RegistryError, RemoteRef
from summon.store.retry import Notice, Retries, stderr_notice

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (INDEX, MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
# Registries may refuse manifests over 4 MiB (distribution spec); we refuse to read bigger ones.
MAX_MANIFEST = 4 << 20
CHUNK = 8 << 20  # blobs bigger than this go up in PATCH chunks of this size
_READ = 1 << 16
MAX_DEPTH = 4  # index -> manifest -> blobs is 2; deeper nesting is refused as garbage
# A reply read whole (a manifest, an index, an error) must have arrived by then (blobs stream).
REPLY_TIME = 120.0


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


# What OpenSSL says when the other end answers a ClientHello in plain HTTP.
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "record layer failure",
    "EOF occurred in violation",
    "http request",
)


class Registry:
    """An HTTP session with one repository of one registry.

    TLS always, verified against the system's CAs and the registry's certs.d folders (tls.py)
    plus ca_file, except that a registry on this machine, or one the user calls insecure, may
    turn out to speak plain HTTP: then summon falls back to it, as docker and podman do. An
    insecure registry's certificate is not verified.
    """

    def __init__(
        self,
        ref: RemoteRef,
        *,
        insecure: bool = False,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        credentials: Credentials | None = None,
        notice: Notice = stderr_notice,
    ) -> None:
        """credentials: these instead of the ones the usual files hold (for `summon login`);
        notice: where a wait for a registry that asks for one (429, 503) is said (retry.py)."""
        self.ref = ref
        self.notice = notice
        self.name = ref.registry
        plain_allowed = insecure or is_loopback(ref.api_host)
        self.scheme = "https"
        self._scheme_known = not plain_allowed
        creds = credentials or find_credentials(ref.registry, ref.repository)
        self._verify = tls.context(ref.api_host, ca_file, verify=not insecure)
        self._http = deadline.bound(
            httpx.Client(
                base_url=f"https://{ref.api_host}",
                auth=RegistryAuth(
                    ref.registry, creds, insecure=plain_allowed, notice=notice, host=ref.api_host
                ),
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                follow_redirects=True,  # blob GETs are often redirected to object storage
                verify=self._verify,
                headers={"User-Agent": f"summon/{summon.__version__}"},
                mounts=_direct(ref.api_host),
            )
        )

    def _find_scheme(self) -> None:
        """HTTPS, or plain HTTP where allowed and the registry does not speak TLS at all."""
        self._scheme_known = True
        try:
            httpx.get(
                f"https://{self.ref.api_host}/v2/",
                verify=self._verify,
                timeout=self._http.timeout,
                trust_env=not is_loopback(self.ref.api_host),  # no proxy (_direct)
            )
        except httpx.ConnectError as e:
            if any(sign in str(e) for sign in _NOT_TLS):
                self.scheme = "http"
                self._http.base_url = httpx.URL(f"http://{self.ref.api_host}")
        except httpx.HTTPError:
            pass  # the real request says what is wrong

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
        """Turns transport failures into one line naming the server and what we were doing."""
        try:
            if not self._scheme_known:
                self._find_scheme()
            yield
        except httpx.ConnectError as e:
            cause = str(e) or type(e).__name__
            if "CERTIFICATE_VERIFY_FAILED" in cause or "SSL" in cause:
                raise RegistryError(
                    f"TLS with {self._where(e)} failed while {what} ({_short(cause)}); trust its "
                    f"CA with --ca-file or certs.d/{self.ref.api_host}/ca.crt, or use --insecure"
                ) from None
            raise RegistryError(
                f"cannot reach {self._where(e)} while {what}: {_short(cause)} (is it running, "
                "is the address right?)"
            ) from None
        except httpx.TimeoutException as e:
            if deadline.expired(e):  # a reply trickling in, each read within the timeout
                raise RegistryError(
                    f"{self._where(e)} had not sent its reply's headers after {REPLY_TIME:g}s "
                    f"while {what}; refused"
                ) from None
            raise RegistryError(f"{self._where(e)} did not answer in time while {what}") from None
        except (httpx.RemoteProtocolError, httpx.DecodingError) as e:
            raise RegistryError(
                f"{self._where(e)} sent a broken reply while {what} ({_short(str(e))}); "
                "is it a registry?"
            ) from None
        except httpx.UnsupportedProtocol as e:  # a redirect to file:, ftp:...
            raise RegistryError(
                f"registry {self.name} sent summon to {_short(str(_url_of(e)))} while {what}: "
                "not an http or https URL; refused"
            ) from None
        except httpx.TransportError as e:
            cause = _short(str(e)) or type(e).__name__
            raise RegistryError(
                f"the connection to {self._where(e)} failed while {what}: {cause}"
            ) from None
        except httpx.InvalidURL as e:
            raise RegistryError(
                f"registry {self.name} sent an unusable URL while {what}: {e}"
            ) from None
        except httpx.TooManyRedirects:
            raise RegistryError(
                f"registry {self.name} redirected too many times while {what} (a redirect loop?)"
            ) from None

    def _where(self, e: httpx.RequestError) -> str:
        """The registry, or the other server it sent summon to (a token server, a redirect's
        target): the one that failed."""
        try:
            url = e.request.url
        except RuntimeError:  # no request attached to it
            return f"registry {self.name}"
        netloc = url.netloc.decode("ascii", "replace")
        if netloc in (self.ref.api_host, self.name):
            return f"registry {self.name}"
        return f"{url.scheme}://{netloc} (where registry {self.name} sent summon)"

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
        """One request whose whole reply is read, up to MAX_MANIFEST bytes (no blob bodies);
        sent again while the registry says to wait (429, 503: retry.py)."""
        retries = Retries(self.name, what, self.notice)
        while True:
            with self._wire(what), contextlib.ExitStack() as stack:
                with deadline.reply_deadline(REPLY_TIME):  # its headers; _read_capped the body
                    response = stack.enter_context(self._http.stream(method, url, **kw))
                if retries.again(response.status_code, response.headers.get("retry-after")):
                    continue
                body = _read_capped(response, MAX_MANIFEST, f"registry {self.name}", what)
            break
        # A read reply, decoded as its headers say, like any other httpx.Response.
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=response.request
        )

    def ping(self) -> None:
        """GET /v2/: proves it is a registry and gets the login out of the way."""
        response = self.request("GET", "/v2/", "checking it speaks the registry API")
        if response.status_code == 404:  # a web server, or another service on that port
            raise RegistryError(
                f"{self.scheme}://{self.ref.api_host}/v2/ answered 404: the server there does "
                "not speak the registry API (is it a registry, is the address right?)"
            )
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
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
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
        listed = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(listed, list):
            raise RegistryError(f"registry {self.name}: the referrers of {digest} are not an index")
        found = []
        for d in listed:
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
        if response.status_code != 202:
            raise self._fail(response, what)
        if "location" not in response.headers:
            raise RegistryError(
                f"registry {self.name} answered 202 while {what} but said no Location to send "
                "it to; is it a registry?"
            )
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
        retries = Retries(self.name, what, self.notice)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._wire(what))
            while True:
                with deadline.reply_deadline(REPLY_TIME):  # its headers; the body streams
                    response = stack.enter_context(
                        self._http.stream("GET", f"{self._repo}/blobs/{desc.digest}")
                    )
                if not retries.again(response.status_code, response.headers.get("retry-after")):
                    break
                response.close()
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


def _direct(api_host: str) -> dict[str, httpx.BaseTransport | None]:
    """Mounts that send requests to this machine straight, never through a proxy the
    environment names (HTTPS_PROXY, ALL_PROXY): a proxy elsewhere cannot reach this machine's
    registry, and Go's clients (podman, skopeo, docker) never send loopback to one either."""
    hosts = {"localhost", "127.0.0.1", "[::1]"}
    if is_loopback(api_host):
        name = urlsplit(f"//{api_host}").hostname or ""
        hosts.add(f"[{name}]" if ":" in name else name)
    return {f"all://{host}": None for host in hosts}


def _read_capped(
    response: httpx.Response, limit: int, where: str, what: str, seconds: float | None = None
) -> bytes:
    """The raw body, refusing one longer than LIMIT: a hostile server cannot fill memory; or
    one still coming after SECONDS (default REPLY_TIME): the read timeout is per read, and a
    server sending a byte now and then would hold summon for as long as it likes."""
    seconds = REPLY_TIME if seconds is None else seconds
    body = bytearray()
    deadline = time.monotonic() + seconds
    for piece in response.iter_raw():  # as it comes (a chunk size would wait for that much)
        body += piece
        if len(body) > limit:
            raise RegistryError(f"{where} sent more than {limit} bytes while {what}; refused")
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{where} was still sending its reply after {seconds:g}s ({len(body)} bytes) "
                f"while {what}; refused"
            )
    return bytes(body)


def _url_of(e: httpx.RequestError) -> httpx.URL | str:
    try:
        return e.request.url
    except RuntimeError:  # no request attached to it
        return "a URL"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise RegistryError(f"{what} is not JSON") from None
