"""What `summon rmi` says of an image an instance or a gateway's service runs."""

from __future__ import annotations

from summon.cli.images import in_use_error


def test_a_gateway_service_is_not_told_to_use_summon_stop() -> None:
    # "stop it first (summon stop)" was all it said, and summon stop stops no gateway service.
    assert in_use_error("http:1", ["gateway service web"]) == (
        "image http:1 is in use by gateway service web: let the gateway's service go idle "
        "(idle_timeout) or remove it from the gateway's config (and SIGHUP), or tag the image "
        "to keep it"
    )
    assert in_use_error("http:1", ["sleeper"]) == (
        "image http:1 is in use by sleeper: stop it first (summon stop), or tag the image to "
        "keep it"
    )
    both = in_use_error("http:1", ["sleeper", "gateway service web"])
    assert "stop it first (summon stop), let the gateway's service go idle" in both
