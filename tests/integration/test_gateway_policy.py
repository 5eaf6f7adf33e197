"""config.toml's verify_key holds for the gateway's boots too, not only for `summon run`.

"every `summon run` refuses images not signed by this key" (docs/signing.md) while the
gateway booted any image its services named: a host that relied on the policy ran unsigned
images as soon as a name was looked up. Now the boot is refused, naming the rule, and the
same image boots once it is signed.
"""

from __future__ import annotations

import http.client

import pytest
from gateway_run import get_page, run_gateway, wait_for
from summon_cli import EXAMPLES, Summon, needs_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, needs_sandbox]

PAGE_MARK = b"hello from a unikernel"


def test_the_gateway_refuses_to_boot_an_image_the_policy_refuses(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    summon = Summon(tmp_path_factory.mktemp("gwpolicy"))
    summon.ok("build", str(EXAMPLES / "http"), "-t", "http:gw")
    summon.ok("key", "generate", str(summon.home / "team"))
    config = summon.home / "config" / "summon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'verify_key = "{summon.home / "team.pub"}"\n')
    with run_gateway(
        summon,
        """
[[service]]
name = "web"
image = "http:gw"
boot_timeout = "20s"
""",
    ) as gateway:
        address = gateway.address("web")
        with pytest.raises((OSError, http.client.HTTPException)):
            get_page(address, timeout=20)
        wait_for(lambda: gateway.status()["web"]["error"], 20, "the refusal on the status page")
        error = gateway.status()["web"]["error"]
        assert "is not signed" in error, error
        assert f"refused by verify_key in {config}" in error, error
        assert gateway.containers() == []
        assert "boot failed" in gateway.log.read_text()

        summon.ok("sign", "http:gw", "--key", str(summon.home / "team.key"))
        assert PAGE_MARK in get_page(address, timeout=30)
        assert gateway.status()["web"]["state"] == "up"
