"""`summon kube --port/--host-port` for an image that serves no TCP port: the flag was left out
of the YAML without a word (no Service, no hostPort); now it is refused, naming the ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from summon.errors import UserError
from summon.store.image import Image
from summon.store.layout import INDEX, Descriptor
from summon.targets.sandbox.export import kube_manifests


@dataclass
class FakeImage:
    """What kube_manifests reads of an image: its app.json, name and digest."""

    app: dict[str, Any]
    ref: str = "127.0.0.1:5000/team/app:v1"
    desc: Descriptor = field(default_factory=lambda: Descriptor(INDEX, "sha256:" + "ab" * 32, 9))

    @property
    def id(self) -> str:
        return self.desc.short_id

    def app_config(self) -> dict[str, Any]:
        return self.app


@pytest.mark.parametrize("flag", ["port", "host_port"])
@pytest.mark.parametrize(("ports", "served"), [([], "none"), (["53/udp"], "53/udp")])
def test_publishing_flags_need_a_tcp_port(flag: str, ports: list[str], served: str) -> None:
    image = cast(Image, FakeImage({"name": "app", "ports": ports}))
    with pytest.raises(UserError) as refused:
        kube_manifests(image, **{flag: 8080})
    text = str(refused.value)
    assert text.startswith(f"--{flag.replace('_', '-')} 8080: image 127.0.0.1:5000/team/app:v1")
    assert f"serves no TCP port (its ports: {served})" in text, text
    # Without the flag, the same image gives its manifests.
    assert kube_manifests(image)[0]["kind"] == "Deployment"


def test_a_tcp_port_is_published_as_asked() -> None:
    image = cast(Image, FakeImage({"name": "app", "ports": ["80/tcp"]}))
    docs = kube_manifests(image, port=8080, host_port=9090)
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["hostPort"] == 9090
    assert docs[-1]["kind"] == "Service" and docs[-1]["spec"]["ports"][0]["port"] == 8080


def test_an_image_with_volumes_runs_as_one_pod_replaced_not_rolled() -> None:
    """Its claim is ReadWriteOnce and each store on it has one writer: --replicas 2 gave a
    second pod that never ran, and the default rolling update started the new pod before the
    old one let go of the volume, a rollout that never ended."""
    image = cast(Image, FakeImage({"name": "todo", "ports": ["80"], "volumes": ["/data"]}))
    with pytest.raises(UserError) as refused:
        kube_manifests(image, replicas=2)
    assert str(refused.value).startswith("--replicas 2: image 127.0.0.1:5000/team/app:v1")
    assert "keeps its data on volumes (/data)" in str(refused.value)
    claim, deployment, _service = kube_manifests(image)
    assert claim["kind"] == "PersistentVolumeClaim"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert kube_manifests(image, replicas=0)[1]["spec"]["replicas"] == 0
    # Without volumes, replicas roll as Kubernetes' default has them.
    stateless = cast(Image, FakeImage({"name": "web", "ports": ["80"]}))
    assert "strategy" not in kube_manifests(stateless, replicas=3)[0]["spec"]


def test_an_image_without_a_registry_is_refused_naming_what_works() -> None:
    # `summon export web:1 --as kube` said "give that name with --image", a flag that
    # export does not have: only `summon kube` has it.
    image = cast(Image, FakeImage({"name": "web", "ports": ["80"]}, ref="web:1"))
    with pytest.raises(UserError) as refused:
        kube_manifests(image)
    text = str(refused.value)
    assert text.startswith("image web:1 has no registry in its name")
    assert "export that name" in text and "summon kube with --image" in text
    pushed = kube_manifests(image, image_name="127.0.0.1:5000/team/web:1")
    spec = pushed[0]["spec"]["template"]["spec"]["containers"][0]
    assert spec["image"] == "127.0.0.1:5000/team/web@sha256:" + "ab" * 32


def test_a_direct_network_image_is_refused_before_any_pod_crash_loops() -> None:
    """network = "direct": the app runs its own TCP/IP on the TAP device summon's sandbox
    hands it, and a pod has none. `summon kube` printed a Deployment whose every pod exited
    at start with status 2 (podman run: `network = "direct" needs a network device from the
    target`), a CrashLoopBackOff found only on the cluster."""
    image = cast(Image, FakeImage({"name": "dapp", "ports": ["80"], "network": "direct"}))
    with pytest.raises(UserError) as refused:
        kube_manifests(image)
    text = str(refused.value)
    assert text.startswith('image 127.0.0.1:5000/team/app:v1 has network = "direct"'), text
    assert 'network = "socket"' in text
    socket_mode = cast(Image, FakeImage({"name": "web", "ports": ["80"], "network": "socket"}))
    assert kube_manifests(socket_mode)[0]["kind"] == "Deployment"
