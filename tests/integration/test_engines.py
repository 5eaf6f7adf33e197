"""summon images beyond summon: a TLS registry with a login, then podman, `podman kube play` of
`summon kube`'s output, and containerd's ctr, each running the pulled image under summon's
exported seccomp profile and a read-only root, with curl reaching the app.

The registry is Debian's docker-registry with a certificate from a test CA and htpasswd auth
on 127.0.0.1; `summon login` writes the credentials every engine here reads back. Each engine
gets storage folders of its own under the test's tmp dir, so nothing of the machine's is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registry_server import REGISTRY_BIN, LocalCA, Registry, make_ca, start_registry, stop_registry
from summon_cli import EXAMPLES, Summon, free_port

USER, PASSWORD = "bob", "an0ther-Pa55word"
ROBOTS = (EXAMPLES / "http" / "static" / "robots.txt").read_bytes()
# This machine's hard limits are below podman's defaults (see issue 16).
ULIMITS = ["nofile=1024:1024", "nproc=1024:1024"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the engines here need root"),
    pytest.mark.skipif(not REGISTRY_BIN.exists(), reason="needs docker-registry"),
    pytest.mark.skipif(shutil.which("htpasswd") is None, reason="needs htpasswd"),
]
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="apt-get install podman")
needs_containerd = pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("ctr") is None,
    reason="apt-get install containerd",
)


@dataclass
class Shipped:
    summon: Summon
    registry: Registry
    ca: LocalCA
    ref: str  # REGISTRY/team/http:v1
    auth_file: Path


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shipped]:
    """examples/http built, logged in to a TLS registry with summon login, and pushed."""
    folder = tmp_path_factory.mktemp("tls-registry")
    ca = make_ca(folder / "ca")
    htpasswd = folder / "htpasswd"
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    htpasswd.write_text(line)
    registry = start_registry(
        folder, {"htpasswd": {"realm": "summon-test", "path": str(htpasswd)}}, tls=ca
    )
    s = Summon(tmp_path_factory.mktemp("home"))
    auth_file = s.home / "auth.json"
    s.env["REGISTRY_AUTH_FILE"] = str(auth_file)
    try:
        s.ok("build", str(EXAMPLES / "http"), "-t", "http:v1")
        ref = f"{registry.host}/team/http:v1"
        s.ok("tag", "http:v1", ref)
        yield Shipped(s, registry, ca, ref, auth_file)
    finally:
        stop_registry(registry)


def login(shipped: Shipped) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shipped.summon.argv("login", shipped.registry.host, "-u", USER, "--password-stdin",
                              "--ca-file", str(shipped.ca.ca))],
        input=PASSWORD + "\n", env=shipped.summon.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_tls_registry_refuses_an_unknown_ca_in_one_line(shipped: Shipped) -> None:
    r = shipped.summon("push", shipped.ref)
    assert r.returncode == 2, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("summon: error:")]
    assert "TLS with registry" in line and "--ca-file" in line


def test_login_push_pull_over_tls_and_skopeo_reads_the_same_login(shipped: Shipped) -> None:
    wrong = subprocess.run(
        [*shipped.summon.argv("login", shipped.registry.host, "-u", USER, "--password-stdin",
                              "--ca-file", str(shipped.ca.ca))],
        input="not-the-password\n", env=shipped.summon.env, capture_output=True, text=True,
    )  # fmt: skip
    assert wrong.returncode == 2 and "refused" in wrong.stderr, wrong.stderr
    assert not shipped.auth_file.exists(), "a refused login must write nothing"
    r = login(shipped)
    assert r.returncode == 0, r.stderr
    doc = json.loads(shipped.auth_file.read_text())
    assert shipped.registry.host in doc["auths"]
    assert oct(shipped.auth_file.stat().st_mode & 0o777) == "0o600"
    shipped.summon.ok("push", shipped.ref, "--ca-file", str(shipped.ca.ca))
    shipped.summon.ok("rmi", shipped.ref)
    shipped.summon.ok("pull", shipped.ref, "--ca-file", str(shipped.ca.ca))
    if shutil.which("skopeo"):
        certs = shipped.auth_file.parent / "certs"
        certs.mkdir(exist_ok=True)
        shutil.copy(shipped.ca.ca, certs / "ca.crt")
        inspected = subprocess.run(
            ["skopeo", "inspect", "--authfile", str(shipped.auth_file), "--cert-dir", str(certs),
             f"docker://{shipped.ref}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["Labels"]["dev.summon.name"] == "http"


def test_certs_d_is_trusted_like_podman_and_docker_do(shipped: Shipped) -> None:
    if login(shipped).returncode != 0:
        pytest.skip("login failed (see the login test)")
    certs_d = Path(shipped.summon.env["XDG_CONFIG_HOME"]) / "containers" / "certs.d"
    folder = certs_d / shipped.registry.host
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped.ca.ca, folder / "ca.crt")
    try:
        shipped.summon.ok("push", shipped.ref)  # no --ca-file: certs.d holds the CA
    finally:
        shutil.rmtree(folder)


def test_logout_forgets_the_login(shipped: Shipped) -> None:
    assert login(shipped).returncode == 0
    shipped.summon.ok("logout", shipped.registry.host)
    doc = json.loads(shipped.auth_file.read_text())
    assert shipped.registry.host not in doc.get("auths", {})
    again = shipped.summon("logout", shipped.registry.host)
    assert again.returncode == 2 and "not logged in" in again.stderr
    assert login(shipped).returncode == 0  # the other tests need it


def test_a_credential_helper_keeps_the_secret(shipped: Shipped, tmp_path: Path) -> None:
    """A config naming credsStore sends the secret to docker-credential-NAME, not the file."""
    store = tmp_path / "helper-store.json"
    helper = tmp_path / "bin" / "docker-credential-testing"
    helper.parent.mkdir()
    helper.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"path = {str(store)!r}\n"
        "try:\n    db = json.load(open(path))\nexcept OSError:\n    db = {}\n"
        "verb, data = sys.argv[1], sys.stdin.read()\n"
        "if verb == 'store':\n    d = json.loads(data); db[d['ServerURL']] = d\n"
        "elif verb == 'get':\n"
        "    if data.strip() not in db:\n        print('credentials not found'); sys.exit(1)\n"
        "    print(json.dumps(db[data.strip()]))\n"
        "elif verb == 'erase':\n    db.pop(data.strip(), None)\n"
        "json.dump(db, open(path, 'w'))\n"
    )
    helper.chmod(0o755)
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "testing"}))
    env = {k: v for k, v in shipped.summon.env.items() if k != "REGISTRY_AUTH_FILE"}
    env["DOCKER_CONFIG"] = str(config_dir)
    env["PATH"] = f"{helper.parent}:{env['PATH']}"
    r = subprocess.run(
        [*shipped.summon.argv("login", shipped.registry.host, "-u", USER, "--password-stdin",
                              "--ca-file", str(shipped.ca.ca))],
        input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in (config_dir / "config.json").read_text()
    assert json.loads(store.read_text())[shipped.registry.host]["Secret"] == PASSWORD
    pushed = subprocess.run(
        shipped.summon.argv("push", shipped.ref, "--ca-file", str(shipped.ca.ca)),
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr  # the login came from the helper


# --- engines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(shipped: Shipped) -> Shipped:
    assert login(shipped).returncode == 0
    shipped.summon.ok("push", shipped.ref, "--ca-file", str(shipped.ca.ca))
    return shipped


def exported(shipped: Shipped, folder: Path, fmt: str, *extra: str) -> Path:
    dest = folder / f"out.{fmt}"
    shipped.summon.ok("export", shipped.ref, "--as", fmt, "-o", str(dest), *extra)
    return dest


def wait_for(port: int, deadline: float = 60) -> bytes:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        curl = subprocess.run(
            ["curl", "-sf", "-m", "3", f"http://127.0.0.1:{port}/robots.txt"], capture_output=True
        )
        if curl.returncode == 0:
            return curl.stdout
        time.sleep(0.3)
    raise AssertionError(f"nothing served on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def podman(pushed: Shipped, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """podman with storage of its own, trusting the test CA, ulimits set as issue 16 says."""
    if shutil.which("podman") is None:
        pytest.skip("apt-get install podman")
    root = tmp_path_factory.mktemp("podman")
    certs = root / "certs"
    certs.mkdir()
    shutil.copy(pushed.ca.ca, certs / "ca.crt")
    conf = root / "containers.conf"
    # podman 4.3's kube play does not apply a pod's sysctls; the engine-wide default does
    # what the YAML's sysctl does on a cluster (docs/scale-out.md).
    conf.write_text(
        f"[containers]\ndefault_ulimits = {json.dumps(ULIMITS)}\n"
        'default_sysctls = ["net.ipv4.ip_unprivileged_port_start=0"]\n'
    )
    os.environ["CONTAINERS_CONF"] = str(conf)
    base = ["podman", "--root", str(root / "storage"), "--runroot", str(root / "run")]
    pulled = subprocess.run(
        [*base, "pull", "--authfile", str(pushed.auth_file), "--cert-dir", str(certs),
         pushed.ref], capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    try:
        yield base
    finally:
        subprocess.run([*base, "rm", "-a", "-f"], capture_output=True, timeout=120)
        subprocess.run([*base, "pod", "rm", "-a", "-f"], capture_output=True, timeout=120)
        os.environ.pop("CONTAINERS_CONF", None)


GETPRIORITY = ["-S", "-E", "-c", "import os; os.getpriority(os.PRIO_PROCESS, 0); print('ok')"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@needs_podman
def test_podman_runs_the_pulled_image_under_summons_profile(
    pushed: Shipped, podman: list[str], tmp_path: Path
) -> None:
    profile = exported(pushed, tmp_path, "seccomp")
    port = free_port()
    name = f"summon-podman-{os.getpid()}"
    started = subprocess.run(
        [*podman, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80",
         "--security-opt", f"seccomp={profile}", "--read-only", "--cap-drop", "ALL",
         "--sysctl", "net.ipv4.ip_unprivileged_port_start=0", pushed.ref],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        assert wait_for(port) == ROBOTS
        inspect = subprocess.run(
            [*podman, "inspect", name], capture_output=True, text=True, check=True
        )
        config = json.loads(inspect.stdout)[0]
        assert config["Config"]["User"] == "65532:65532"
        assert config["HostConfig"]["ReadonlyRootfs"] is True
        # The profile is applied: getpriority, which podman's own default profile allows,
        # is refused inside (summon's allowlist has no use for it) ...
        denied = _run([*podman, "exec", name, "/usr/bin/python3.11", *GETPRIORITY])
        assert denied.returncode != 0 and "PermissionError" in denied.stderr, denied
    finally:
        subprocess.run([*podman, "rm", "-f", name], capture_output=True, timeout=60)
    # ... and the control: the same call in the same image under podman's default profile.
    control = _run(
        [*podman, "run", "--rm", "--entrypoint", "/usr/bin/python3.11", pushed.ref, *GETPRIORITY]
    )
    assert control.returncode == 0 and control.stdout.strip() == "ok", control.stderr


@needs_podman
def test_podman_runs_an_app_with_a_store_on_a_podman_volume(
    pushed: Shipped, podman: list[str], tmp_path: Path
) -> None:
    """examples/todo under `podman run -v NAME:/data`: the app refused to start ('no volume
    is mounted at /data': no SUMMON_VOLUMES under an engine), and then could not write the
    new volume (podman copies the mount point's owner and mode, root's 0755, into it). The
    mount point is a mount now, and the image's mount point is 1777: the store is made."""
    s = pushed.summon
    ref = f"{pushed.registry.host}/team/todo:v1"
    s.ok("build", str(EXAMPLES / "todo"), "-t", ref)
    s.ok("push", ref, "--ca-file", str(pushed.ca.ca))
    profile = tmp_path / "todo.json"
    s.ok("export", ref, "--as", "seccomp", "-o", str(profile))
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(pushed.ca.ca, certs / "ca.crt")
    pulled = _run([*podman, "pull", "--authfile", str(pushed.auth_file), "--cert-dir",
                   str(certs), ref])  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    port, name, volume = free_port(), f"summon-todo-{os.getpid()}", f"summon-todo-{os.getpid()}"
    started = _run(
        [*podman, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "-v",
         f"{volume}:/data", "--security-opt", f"seccomp={profile}", "--read-only",
         "--cap-drop", "ALL", ref]
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        end = time.monotonic() + 60
        while (page := _run(["curl", "-sf", "-m", "3", f"http://127.0.0.1:{port}/"])).returncode:
            logs = _run([*podman, "logs", name])
            assert time.monotonic() < end, logs.stdout + logs.stderr
            time.sleep(0.3)
        assert "<title>Tasks</title>" in page.stdout
        where = _run([*podman, "volume", "inspect", volume, "--format", "{{.Mountpoint}}"])
        assert (Path(where.stdout.strip()) / "todo" / "objects").is_dir(), where
    finally:
        _run([*podman, "rm", "-f", name])
        _run([*podman, "volume", "rm", "-f", volume])


@needs_podman
def test_podman_kube_play_runs_summon_kube_output(
    pushed: Shipped, podman: list[str], tmp_path: Path
) -> None:
    port = free_port()
    yaml_text = pushed.summon.ok("kube", pushed.ref, "--host-port", str(port))
    manifest = tmp_path / "http.yaml"
    manifest.write_text(yaml_text)
    profile_root = tmp_path / "seccomp"
    profile_name = next(
        line.split(":", 1)[1].strip()
        for line in yaml_text.splitlines()
        if "localhostProfile:" in line
    )
    (profile_root / profile_name).parent.mkdir(parents=True)
    exported(pushed, tmp_path, "seccomp")
    shutil.copy(tmp_path / "out.seccomp", profile_root / profile_name)
    played = subprocess.run(
        [*podman, "kube", "play", "--seccomp-profile-root", str(profile_root), str(manifest)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert played.returncode == 0, played.stderr + played.stdout
    try:
        try:
            served = wait_for(port)
        except AssertionError as e:
            raise AssertionError(f"{e}; {_podman_diagnosis(podman)}") from None
        assert served == ROBOTS
    finally:
        subprocess.run([*podman, "kube", "down", str(manifest)], capture_output=True, timeout=120)


def _podman_diagnosis(podman: list[str]) -> str:
    """What podman says of its containers, for an assertion message."""
    listed = _run([*podman, "ps", "-a", "--format", "{{.Names}} {{.Status}}"]).stdout
    logs = [
        f"{name}: {_run([*podman, 'logs', name]).stderr[-800:]}"
        for name in (line.split()[0] for line in listed.splitlines() if line.strip())
    ]
    return f"containers: {listed!r}; logs: {logs}"


def test_the_kube_yaml_validates_against_the_kubernetes_schema(pushed: Shipped) -> None:
    import kubernetes_validate
    import yaml

    text = pushed.summon.ok("kube", pushed.ref, "--replicas", "3", "--port", "8080")
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31.0", strict=True)
    pod = docs[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith("@" + json.loads(
        pushed.summon.ok("inspect", pushed.ref, "--json"))["digest"])  # fmt: skip
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["seccompProfile"]["type"] == "Localhost"
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in pod["securityContext"][
        "sysctls"
    ]
    assert container["readinessProbe"] == {"tcpSocket": {"port": 80}, "periodSeconds": 2}
    assert docs[1]["spec"]["ports"][0]["port"] == 8080


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A containerd of the test's own (root, state and socket under tmp), and ctr on it."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("apt-get install containerd")
    root = tmp_path_factory.mktemp("containerd")
    sock = root / "containerd.sock"
    config = root / "config.toml"
    config.write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n'
    )
    log = root / "containerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["containerd", "--config", str(config), "--root", str(root / "root"),
             "--state", str(root / "state"), "--address", str(sock)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ctr = ["ctr", "--address", str(sock), "--namespace", "summon-test"]
    deadline = time.monotonic() + 30
    while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"containerd did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield ctr
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_containerd
def test_containerd_runs_the_pulled_image_under_summons_profile(
    pushed: Shipped, containerd: list[str], tmp_path: Path
) -> None:
    # ctr speaks plain HTTP to registries on localhost unless a hosts.toml says otherwise.
    hosts = tmp_path / "hosts" / pushed.registry.host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        f'server = "https://{pushed.registry.host}"\n'
        f'[host."https://{pushed.registry.host}"]\n'
        f'  ca = "{pushed.ca.ca}"\n  capabilities = ["pull", "resolve"]\n'
    )
    pulled = subprocess.run(
        [*containerd, "images", "pull", "--user", f"{USER}:{PASSWORD}", "--hosts-dir",
         str(tmp_path / "hosts"), "--platform", "linux/amd64", pushed.ref],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    profile = exported(pushed, tmp_path, "seccomp")
    port = free_port()
    name = f"summon-ctr-{os.getpid()}"
    # ctr has no CNI set up here: the host's network, on loopback, the app told where to bind.
    log = (tmp_path / "ctr-run.log").open("wb")
    run = subprocess.Popen(
        [*containerd, "run", "--rm", "--net-host", "--read-only", "--seccomp", "--seccomp-profile",
         str(profile), "--env", f"SUMMON_PORTS=80/tcp={port}", "--env", "SUMMON_BIND=127.0.0.1",
         pushed.ref, name],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            served = wait_for(port)
        except AssertionError as e:
            said = (tmp_path / "ctr-run.log").read_text(errors="replace")[-1500:]
            raise AssertionError(f"{e}; ctr run said: {said}") from None
        assert served == ROBOTS
        info = subprocess.run(
            [*containerd, "container", "info", name], capture_output=True, text=True, check=True
        )
        spec = json.loads(info.stdout)["Spec"]
        assert spec["process"]["user"]["uid"] == 65532
        assert spec["root"]["readonly"] is True
        assert "getpriority" not in json.dumps(spec["linux"]["seccomp"])
    finally:
        subprocess.run([*containerd, "task", "kill", "-s", "SIGKILL", name], capture_output=True)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        log.close()
        subprocess.run([*containerd, "container", "rm", name], capture_output=True)
