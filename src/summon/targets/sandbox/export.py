"""The sandbox's policy for other engines: a seccomp profile file and Kubernetes manifests.

podman, containerd and the kubelet take a seccomp profile in the Docker/containers JSON format
(the same shape as an OCI `linux.seccomp`). They have no notification listener, so the profile
allows execve outright where summon's own sandbox gates it (the exec gate lets exactly runc's
one exec through, seccomp.py): weaker, and documented in docs/scale-out.md. Everything else is
the image's own allowlist, which covers what runc does after it installs the filter.

The Kubernetes manifests (a Deployment and a Service) carry the rest of the sandbox: non-root
numeric user, read-only root, no privilege escalation, every capability dropped, the seccomp
profile as a Localhost profile, the memory limit, an emptyDir on /tmp, TCP probes (there is no
shell in an image for exec probes), and the image by digest.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from summon.errors import UserError
from summon.targets.sandbox import seccomp

if TYPE_CHECKING:
    from summon.store.image import Image

# Where the kubelet looks for Localhost profiles is its --seccomp-profile-root, by default
# /var/lib/kubelet/seccomp; localhostProfile is a path below it.
KUBELET_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"
LOW_PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"
TMP_SIZE = "16Mi"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


# What runc's init calls between installing the filter and exec'ing the app when the engine
# does not set no_new_privs (podman's default): it must then install the filter before it
# drops privileges, so the user switch and the capability drop run under it. summon's own
# sandbox sets no_new_privs and installs the filter last, so its allowlist has none of these.
# Without capabilities (every engine here drops them all) none lets the app gain anything:
# setuid/setgid to another id needs CAP_SETUID/CAP_SETGID, capset can only lower.
ENGINE_RUNTIME = {
    "setgroups": "runc sets the user's supplementary groups",
    "setresuid": "runc switches to the image's user",
    "setresgid": "runc switches to the image's group",
    "setuid": "the same, for runtimes that use the older calls",
    "setgid": "the same, for runtimes that use the older calls",
    "capget": "runc reads the capability sets it is about to drop",
    "capset": "runc drops the capabilities",
    "prctl": "runc keeps capabilities across the user switch (PR_SET_KEEPCAPS), sets no_new_privs",
    "close_range": "runc closes the file descriptors the app must not inherit",
}


def engine_profile(network: str, seal: bool = False) -> dict[str, Any]:
    """The seccomp profile for podman, containerd and the kubelet: the sandbox's static list
    (not the image's recorded one: an engine runs much more of runc under the filter, the
    user switch, the chdir...), with execve allowed (no listener there to gate it), what runc
    does under the filter, no listener. What summon's gate refuses (other socket families) is
    refused here outright; a sealing image may install its own filter."""
    profile = seccomp.profile(network, "", seal=seal)
    profile.pop("listenerPath", None)
    rules: list[dict[str, Any]] = [{"names": sorted(ENGINE_RUNTIME), "action": "SCMP_ACT_ALLOW"}]
    for rule in profile["syscalls"]:
        if rule.get("action") == "SCMP_ACT_NOTIFY":
            if rule["names"] == ["execve"]:
                rule = {**rule, "action": "SCMP_ACT_ALLOW"}
            elif "args" not in rule:
                continue  # the calls summon's gate refuses with a line: the default, EPERM
            else:
                rule = {**rule, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}  # EPERM
        rules.append(rule)
    profile["syscalls"] = rules
    return profile


def profile_name(image: Image) -> str:
    """The profile's file name: the app and the image's short ID, so versions sit side by side."""
    app = str(image.app_config().get("name") or "app")
    return f"summon/{dns_label(app)}-{image.id}.json"


def dns_label(text: str) -> str:
    label = _DNS_LABEL.sub("-", text.lower()).strip("-")[:63].strip("-")
    return label or "app"


def pullable(image: Image, override: str | None) -> str:
    """The image as a cluster pulls it: REGISTRY/REPOSITORY@DIGEST (by digest, never a tag)."""
    from summon.store.reference import RemoteRef

    name = override or image.ref
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        raise UserError(
            f"image {name} has no registry in its name, so no cluster can pull it: push it "
            "(summon tag, summon push) and export that name, or give it to summon kube "
            "with --image REGISTRY/NAME[:TAG]"
        )
    remote = RemoteRef.parse(name)
    return f"{remote.registry}/{remote.repository}@{image.desc.digest}"


def kube_manifests(
    image: Image,
    *,
    replicas: int = 1,
    port: int | None = None,
    host_port: int | None = None,
    image_name: str | None = None,
) -> list[dict[str, Any]]:
    """A Deployment and a Service running image with the sandbox's policy."""
    from summon.build.records import IMAGE_UID

    app = image.app_config()
    if app.get("network") == "direct":  # a pod has no TAP for it: it would exit at start
        raise UserError(
            f'image {image.ref} has network = "direct": its app runs its own TCP/IP on a '
            "network device that summon's sandbox or qemu target hands it, and a pod has none "
            '(each would exit at start); build it with network = "socket" for a cluster'
        )
    name = dns_label(str(app.get("name") or "app"))
    ports = [_port(p) for p in app.get("ports", [])]
    tcp = [number for number, proto in ports if proto == "TCP"]
    for flag, value in (("--port", port), ("--host-port", host_port)):
        if value is not None and not tcp:  # it would be left out of the YAML without a word
            served = ", ".join(str(p) for p in app.get("ports", [])) or "none"
            raise UserError(
                f"{flag} {value}: image {image.ref} serves no TCP port (its ports: {served}); "
                "there is nothing to publish"
            )
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "summon"}
    memory = f"{max(int(app.get('memory', 128 << 20)) // 2**20, 8)}Mi"
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "fsGroup": IMAGE_UID,
        "seccompProfile": {"type": "Localhost", "localhostProfile": profile_name(image)},
    }
    if any(number < 1024 for number, _ in ports):
        pod_security["sysctls"] = [{"name": LOW_PORT_SYSCTL, "value": "0"}]
    container_ports = []
    for number, proto in ports:
        entry: dict[str, Any] = {"containerPort": number, "protocol": proto}
        entry["name"] = f"{proto.lower()}-{number}"
        if host_port is not None and number == (tcp[0] if tcp else None):
            entry["hostPort"] = host_port
        container_ports.append(entry)
    container: dict[str, Any] = {
        "name": name,
        "image": pullable(image, image_name),
        "imagePullPolicy": "IfNotPresent",
        "ports": container_ports,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if tcp:
        container["readinessProbe"] = {"tcpSocket": {"port": tcp[0]}, "periodSeconds": 2}
        container["livenessProbe"] = {
            "tcpSocket": {"port": tcp[0]},
            "periodSeconds": 10,
            "failureThreshold": 3,
        }
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}}
    ]
    claims = []
    for i, path in enumerate(app.get("volumes", [])):
        claim = f"{name}-{dns_label(PurePosixPath(path).name or str(i))}"
        volumes.append({"name": f"data-{i}", "persistentVolumeClaim": {"claimName": claim}})
        container["volumeMounts"].append({"name": f"data-{i}", "mountPath": path})
        claims.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": labels},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    if claims:
        # A claim is ReadWriteOnce and each store on it has one writer (a lock): a second
        # replica would wait for ever (Multi-Attach) or fail on the lock, and a rolling update
        # would start the new pod before the old one lets go, a rollout that never ends.
        if replicas > 1:
            raise UserError(
                f"--replicas {replicas}: image {image.ref} keeps its data on volumes "
                f"({', '.join(app.get('volumes', []))}), which one pod at a time may use; "
                "use --replicas 1 (or 0)"
            )
        deployment["spec"]["strategy"] = {"type": "Recreate"}
    docs = [*claims, deployment]
    if ports:
        service_ports = []
        for number, proto in ports:
            public = port if (port is not None and number == (tcp[0] if tcp else None)) else number
            service_ports.append(
                {
                    "name": f"{proto.lower()}-{number}",
                    "port": public,
                    "targetPort": number,
                    "protocol": proto,
                }
            )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": {"selector": labels, "ports": service_ports},
            }
        )
    return docs


def kube_yaml(image: Image, **options: Any) -> str:
    """The manifests as one YAML stream, with a comment on where the seccomp profile goes."""
    import yaml

    docs = kube_manifests(image, **options)
    header = (
        f"# summon kube {image.ref} ({image.desc.digest})\n"
        f"# Each node needs the seccomp profile at {KUBELET_SECCOMP_ROOT}/{profile_name(image)}:\n"
        f"#   summon export {image.ref} --as seccomp -o {profile_name(image).split('/')[-1]}\n"
    )

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # every document spelled out: no &id001 anchors for readers to chase

    body: str = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return header + body


def profile_json(image: Image) -> str:
    app = image.app_config()
    profile = engine_profile(str(app.get("network", "socket")), seccomp.seals(app))
    return json.dumps(profile, indent=2, sort_keys=True) + "\n"


def _port(text: object) -> tuple[int, str]:
    number, _, proto = str(text).partition("/")
    return int(number), (proto or "tcp").upper()
