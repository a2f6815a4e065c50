"""Free TCP ports for a multi-worker cluster on one machine (private)."""

import socket


def free_local_ports(count):
    """Returns `count` distinct free TCP ports on 127.0.0.1.

    For the multi-worker tests and benchmarks. The ports are bound together,
    so they differ, and freed just before the workers bind them.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
