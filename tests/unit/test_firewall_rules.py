"""The packet filter scripts: labelled, idempotent, addresses only."""

from __future__ import annotations

import pytest

from sorctl.cluster import firewall


def test_members_return_the_rest_is_dropped_for_dispy_ports_only():
    script = firewall.add_script("lab", ["10.0.0.2", "10.0.1.3", "10.0.0.2"])
    c = firewall.chain("lab")
    assert len(c) <= 28 and c.startswith("SORCTL-")
    lines = script.splitlines()
    returns = [ln for ln in lines if "-j RETURN" in ln and "-s " in ln]
    assert [ln.split("-s ")[1].split()[0] for ln in returns] == ["10.0.0.2/32", "10.0.1.3/32"]
    assert lines.index(next(ln for ln in lines if ln.endswith("-j DROP"))) > lines.index(
        returns[-1]
    )
    jumps = [ln for ln in lines if "-I INPUT" in ln]
    assert len(jumps) == 2 and all("--dports 9700:9702" in j for j in jumps)
    # idempotent: the chain is flushed when it exists, each jump added only when missing
    assert f"iptables -w -N {c} 2>/dev/null || iptables -w -F {c}" in script
    assert all(j.startswith("iptables -w -C INPUT") for j in jumps)
    assert all("sorctl:lab" in ln for ln in lines if ln.startswith("iptables -w -A"))


def test_no_shell_text_but_addresses():
    with pytest.raises(ValueError):
        firewall.add_script("lab", ["10.0.0.2; rm -rf /"])


def test_remove_deletes_every_jump_and_the_chain():
    script = firewall.remove_script("lab")
    assert script.count("while iptables -w -D INPUT") == 2
    assert f"-X {firewall.chain('lab')}" in script
    assert firewall.chain("lab") != firewall.chain("lab2")
