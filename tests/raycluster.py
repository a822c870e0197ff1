"""The local Ray cluster of the tests: one per test module, 2 CPUs, pinned to loopback (Ray left alone looks for a
public address of its own and listens on every interface), no usage reports, no dashboard. A loud skip where ray
is not installed, a failure under CI (`make dev` installs it: the dev extras pull evoforge[ray])."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_or_skip() -> Any:
    """The ray package, or a loud skip (a failure under CI)."""
    for name, value in LOOPBACK_ENV.items():
        os.environ.setdefault(name, value)  # read when ray is imported
    try:
        import ray
    except ImportError:
        reason = "RAY TESTS NOT RUN: the ray package is missing (pip install -e '.[ray]'; `make dev` installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return ray


@contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[Any]:
    """A Ray started in this process on 127.0.0.1 with `num_cpus` CPUs, shut down at the end."""
    ray = ray_or_skip()
    ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def listening_addresses(root_pid: int) -> set[str]:
    """The local addresses of the TCP sockets listening in `root_pid` and its descendants (hex as /proc shows
    them: 0100007F:PORT is 127.0.0.1)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    family, grown = {root_pid}, True
    while grown:
        more = {pid for pid, ppid in parents.items() if ppid in family} - family
        family |= more
        grown = bool(more)
    inodes: set[str] = set()
    for pid in family:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1])
    return found


def is_loopback(address: str) -> bool:
    """Whether a /proc/net/tcp{,6} local address (hex, 32-bit words in host order) is a loopback one."""
    host = bytes.fromhex(address.partition(":")[0])
    raw = b"".join(host[i:i + 4][::-1] for i in range(0, len(host), 4))
    ip = ipaddress.ip_address(raw)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback
