"""The example apps under the runtime on the host, their guest ports mapped by SUMMON_PORTS."""

from __future__ import annotations

import http.client
import socket

import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from fake_image import EXAMPLES, ImageRoot, free_port, read_line, stop


def test_http_example_on_a_mapped_port(image: ImageRoot) -> None:
    image.link("/app", EXAMPLES / "http")
    image.link("/data/static", EXAMPLES / "http" / "static")
    image.vendor("h11")
    image.config("app:main", data={"static": "/data/static"}, ports=["80/tcp"])
    port = free_port()
    process = image.start(env={"SUMMON_PORTS": f"80/tcp={port}", "SUMMON_BIND": "127.0.0.1"})
    assert read_line(process) == "info: serving 3 files on port 80"

    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    client.request("GET", "/")
    response = client.getresponse()
    page = response.read()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"Hello from a summon unikernel" in page
    client.request("GET", "/style.css")  # the same connection, kept alive
    response = client.getresponse()
    assert (response.status, response.getheader("Content-Type")) == (
        200,
        "text/css; charset=utf-8",
    )
    response.read()
    client.request("GET", "/nothing-here")
    response = client.getresponse()
    assert response.status == 404
    response.read()

    status, out, err = stop(process)
    client.close()
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "info: GET / 200 " + str(len(page)),
        "info: GET /style.css 200 " + str((EXAMPLES / "http/static/style.css").stat().st_size),
        "info: GET /nothing-here 404 14",
        "info: stopped",
    ]


def test_dns_example_on_mapped_ports(image: ImageRoot) -> None:
    image.link("/app", EXAMPLES / "dns")
    image.link("/data/zone", EXAMPLES / "dns" / "zone")
    image.vendor("dns")
    image.config("dnsd:main", data={"zone": "/data/zone"}, ports=["53/udp", "53/tcp"])
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    process = image.start(
        env={"SUMMON_PORTS": f"53/udp={udp},53/tcp={tcp}", "SUMMON_BIND": "127.0.0.1"}
    )
    assert read_line(process) == "info: serving example.test. on port 53"

    query = dns.message.make_query("www.example.test", "A")
    answer = dns.query.udp(query, "127.0.0.1", port=udp, timeout=10)
    name = query.question[0].name
    rrset = answer.find_rrset(answer.answer, name, dns.rdataclass.IN, dns.rdatatype.A)
    assert [r.to_text() for r in rrset] == ["192.0.2.10"]
    answer = dns.query.tcp(
        dns.message.make_query("nope.example.test", "A"), "127.0.0.1", port=tcp, timeout=10
    )
    assert answer.rcode() == dns.rcode.NXDOMAIN

    status, _, err = stop(process)
    assert (status, err) == (0, "")
