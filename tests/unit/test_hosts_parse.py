"""`--host` values: endpoints, the optional dispy address, and the one-line errors."""

from __future__ import annotations

import pytest

from sorctl.cluster.hosts import parse_host, parse_hosts
from sorctl.errors import InputError


@pytest.mark.parametrize(
    "text,kind,hostname,address",
    [
        ("ssh://alice@lab1", "ssh", "lab1", None),
        ("ssh://alice@lab1:2222=10.0.5.3", "ssh", "lab1", "10.0.5.3"),
        ("tcp://10.0.5.7:2376", "tls", "10.0.5.7", None),
        ("tcp://10.0.5.7:2375", "tcp", "10.0.5.7", None),
        ("tcp://box:12376", "tcp", "box", None),
        ("lab-ctx", "context", "", None),
        ("lab-ctx=192.168.1.4", "context", "", "192.168.1.4"),
    ],
)
def test_endpoints(text, kind, hostname, address):
    spec = parse_host(text)
    assert (spec.kind, spec.hostname, spec.address) == (kind, hostname, address)
    assert spec.endpoint == text.split("=")[0]


def test_tls_files_make_any_tcp_port_but_2375_tls():
    assert parse_host("tcp://box:12376", tls=True).kind == "tls"
    assert parse_host("tcp://box:2375", tls=True).kind == "tcp"


@pytest.mark.parametrize(
    "text,words",
    [
        ("tcp://box", "needs a port"),
        ("http://box:2376", "scheme"),
        ("ssh://alice@lab1=lab1", "not an IPv4 address"),
        ("ssh://alice@lab1/x", "no path"),
        ("bad name!", "docker context"),
        ("=10.0.0.1", "no endpoint"),
        ("tcp://box:99999", "bad port"),
    ],
)
def test_bad_hosts_are_one_line_input_errors(text, words):
    with pytest.raises(InputError, match=words) as err:
        parse_host(text)
    assert "\n" not in str(err.value)


def test_the_same_host_twice_is_an_error():
    with pytest.raises(InputError, match="twice"):
        parse_hosts(["ssh://a@x", "ssh://a@x=10.0.0.2"])
