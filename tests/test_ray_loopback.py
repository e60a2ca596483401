"""The in-process Ray cluster evalpipe starts binds to loopback only, even when Ray was imported before
``start_local_cluster`` ran (Ray reads its cluster switch once, at import)."""

from __future__ import annotations

import ipaddress
import os

import psutil
import pytest


@pytest.mark.ray
def test_local_cluster_uses_and_listens_on_loopback_only(ray_cluster):
    assert {n["NodeManagerAddress"] for n in ray_cluster.nodes()} == {"127.0.0.1"}

    @ray_cluster.remote
    def node_ip() -> str:
        return ray_cluster.util.get_node_ip_address()

    assert ray_cluster.get(node_ip.remote()) == "127.0.0.1"
    ours = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)} | {os.getpid()}
    outside = []
    for conn in psutil.net_connections("tcp"):
        if conn.pid not in ours:
            continue
        for address in (conn.laddr, conn.raddr):
            if not address:
                continue
            ip = ipaddress.ip_address(address.ip)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_loopback:
                outside.append((conn.status, str(ip), address.port))
    assert not outside, f"Ray uses addresses outside loopback: {sorted(set(outside))}"
