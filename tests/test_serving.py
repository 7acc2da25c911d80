"""The server's own limits hold against idle and slow clients (issue 14.3): connections that say
nothing, or trickle a request, never lock out a client that asks for something."""

import selectors
import socket
import time

import pytest
import requests

from appliance import serving
from appliance.config import load_config


@pytest.fixture(params=[None, 50], ids=["default-limit", "limit-50"])
def config(tmp_path, request):
    overrides = {} if request.param is None else {"connection_limit": request.param}
    return load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, port=8000, **overrides)


def idle_sockets(url, count):
    """``count`` connections: half say nothing, half send part of a request and stop."""
    host, port = url.removeprefix("http://").split(":")
    opened = []
    for n in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if n % 2:
            sock.sendall(b"GET /repos/acme/names HTTP/1.1\r\nHost: x\r\n")
        opened.append(sock)
    return opened


def closed_by_server(sockets, deadline_seconds=60):
    """How many of ``sockets`` the server has closed, polling until all are or the deadline."""
    closed = set()
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        end = time.monotonic() + deadline_seconds
        while len(closed) < len(sockets) and time.monotonic() < end:
            for ready, _events in selector.select(timeout=0.5):
                try:
                    data = ready.fileobj.recv(4096)
                except ConnectionError:
                    data = b""
                if not data:
                    closed.add(ready.fileobj)
                    selector.unregister(ready.fileobj)
    return len(closed)


def test_200_idle_connections_do_not_stop_an_authorized_fetch(hv):
    sockets = idle_sockets(hv.url, 200)
    try:
        for _attempt in range(5):
            # A fresh connection each time, queued behind all of the idle ones.
            response = requests.get(f"{hv.url}/repos/acme/names", headers={"authorization": hv.repo_key},
                                    timeout=60)
            assert response.status_code == 200
        limit = hv.runtime.config.connection_limit
        if limit < 200:  # the idle ones made room: the server holds at most its limit open
            assert closed_by_server(sockets) >= 200 - limit
    finally:
        for sock in sockets:
            sock.close()



def test_a_trusted_proxy_address_is_spelled_as_an_ipv6_socket_sees_it():
    """Listening on "::" (dual-stack), an IPv4 front connects as ::ffff:a.b.c.d; waitress compares
    addresses as text, so the configured IPv4 address must be given in that form."""
    for host, trusted, expected in (("127.0.0.1", "10.0.0.10", "10.0.0.10"), ("::", "10.0.0.10", "::ffff:10.0.0.10"),
                                    ("::", "fd00::10", "fd00::10"), ("127.0.0.1", True, "*")):
        config = load_config(environ={}, host=host, trusted_proxy=trusted)
        assert serving.waitress_options(config)["trusted_proxy"] == expected
