"""The suite's port picker: consecutive, free, and never in the kernel's ephemeral range."""

import socket
from pathlib import Path

from tests.support.ports import free_port_run


def test_a_run_of_ports_is_free_and_below_the_ephemeral_range() -> None:
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        first = free_port_run(4)
        assert first >= 10_000
        assert first + 3 < ephemeral_start
        held = []
        try:
            for port in range(first, first + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                # As a server binds (uvicorn, redis-server): a port that an earlier test's
                # server left in TIME_WAIT is free to it, and refused only without this.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
        finally:
            for sock in held:
                sock.close()
