"""Host routes that new cluster subnets must avoid (read from /proc/net/route)."""

from __future__ import annotations

from sorctl.cluster.plan import pick_subnets
from sorctl.engine.observe import host_route_subnets

# /proc/net/route: destination and mask are little-endian hex.
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
vpn0\t0000D50A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_host_routes_without_the_default_route(tmp_path):
    f = tmp_path / "route"
    f.write_text(ROUTES)
    assert host_route_subnets(str(f)) == ["172.17.0.0/16", "192.168.2.0/24", "10.213.0.0/16"]


def test_a_host_route_over_the_first_pool_pushes_subnets_to_the_second(tmp_path):
    f = tmp_path / "route"
    f.write_text(ROUTES)
    picked = pick_subnets(2, host_route_subnets(str(f)), "c")
    assert all(p.startswith("10.214.") for p in picked)


def test_missing_route_file_means_no_routes(tmp_path):
    assert host_route_subnets(str(tmp_path / "absent")) == []
