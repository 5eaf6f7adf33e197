"""`summon login` / `logout`: credentials written where docker, podman and skopeo read them.

The file is Docker's config.json format: $REGISTRY_AUTH_FILE if set (podman's and skopeo's
override), else $DOCKER_CONFIG/config.json, else ~/.docker/config.json, which podman and skopeo
also consult. Credential helpers are honoured as docker honours them: a `credHelpers` entry for
the registry, or a `credsStore` for all, means the secret goes to the program
`docker-credential-NAME` (its store/get/erase protocol: JSON on stdin and stdout) and the file
only records that the registry has a login. Files are written whole (temporary name, fsync,
rename) with mode 0600; other keys in them are kept as they were.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from summon.errors import UserError

HELPER_TIMEOUT = 30.0


class CredentialError(UserError):
    """A credentials file or helper that summon cannot use."""


def auth_file() -> Path:
    """The file `summon login` writes."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(os.environ["REGISTRY_AUTH_FILE"])
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(folder) / "config.json"


def read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialError(f"cannot read the credentials file {path}: {e.strerror}") from None
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CredentialError(f"the credentials file {path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise CredentialError(f"the credentials file {path} does not hold a JSON object")
    return doc


def helper_for(config: dict[str, Any], registry: str) -> str | None:
    """The credential helper the config names for registry, if any."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(registry), str):
        return str(helpers[registry])
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def _helper(name: str, verb: str, payload: str) -> str:
    program = f"docker-credential-{name}"
    path = shutil.which(program)
    if path is None:
        raise CredentialError(
            f"the credentials file names the helper {program}, which is not installed"
        )
    try:
        done = subprocess.run(
            [path, verb],
            input=payload,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialError(f"{program} {verb} did not answer in time") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip()).splitlines()
        raise CredentialError(f"{program} {verb} failed: {said[-1] if said else 'no reason'}")
    return done.stdout


def helper_get(name: str, registry: str) -> tuple[str, str] | None:
    """(user, secret) from a helper, or None if it has none for registry."""
    try:
        out = _helper(name, "get", registry)
    except CredentialError as e:
        if "credentials not found" in str(e).lower():
            return None
        raise
    try:
        doc = json.loads(out)
        return str(doc["Username"]), str(doc["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CredentialError(f"docker-credential-{name} get answered something unusable") from None


def login(registry: str, username: str, password: str) -> str:
    """Record the login; returns where it went (the file, or the helper and the file)."""
    path = auth_file()
    config = read_config(path)
    auths = config.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise CredentialError(f'the credentials file {path} has an "auths" that is not an object')
    helper = helper_for(config, registry)
    if helper is not None:
        payload = json.dumps({"ServerURL": registry, "Username": username, "Secret": password})
        _helper(helper, "store", payload)
        auths[registry] = {}  # docker's own mark: the secret is in the helper
        _write(path, config)
        return f"docker-credential-{helper} (noted in {path})"
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[registry] = {"auth": token}
    _write(path, config)
    return str(path)


def logout(registry: str) -> bool:
    """Forget the login for registry; False if there was none."""
    path = auth_file()
    config = read_config(path)
    auths = config.get("auths")
    known = isinstance(auths, dict) and registry in auths
    helper = helper_for(config, registry)
    if helper is not None:
        with contextlib.suppress(CredentialError):
            _helper(helper, "erase", registry)
            known = True
    if isinstance(auths, dict) and registry in auths:
        del auths[registry]
        _write(path, config)
    return known


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise CredentialError(f"cannot write the credentials file {path}: {e.strerror}") from None
