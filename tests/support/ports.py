"""Ports for a child process to listen on, picked where nothing else in the suite will take them.

A port from bind(("127.0.0.1", 0)) is in the kernel's ephemeral range, which every outgoing
connection of the suite (PostgreSQL, Redis, HTTP clients) also draws from: between the test
closing it and the child binding it, a connection may take it. And a run of consecutive
ports (`concord demo --worker-port P` binds P, P+1, ...) cannot come from bind(0) at all: P+1
was seen taken by some connection (tests/test_demo.py, under pytest -n 2). So pick below the
ephemeral range, where the kernel never hands out ports, and check each one by binding it.
"""

import random
from pathlib import Path

from concord.embedded_redis import port_free

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port_run(count: int = 1, *, host: str = "127.0.0.1", tries: int = 200) -> int:
    """The first of `count` consecutive ports, all free now and outside the ephemeral range."""
    top = _ephemeral_start() - count
    if top <= _LOWEST:
        raise RuntimeError(f"no room below the ephemeral range ({_RANGE}) for {count} ports")
    for _ in range(tries):
        first = random.randrange(_LOWEST, top)
        if all(port_free(first + i, host) for i in range(count)):
            return first
    raise RuntimeError(f"found no {count} consecutive free ports in {tries} tries")
