"""One binding talking to another: Python <-> C, through the C binding's
own example (bindings/c/examples/echo.c, built by scripts/test-python.sh as
$BUSBAR_BIN_DIR/busbar-c-echo): a request/reply server and its client."""

from __future__ import annotations

import busbar
from conftest import HANG, Proc, binary


def test_python_asks_the_c_echo_server(bus, procs) -> None:
    server = Proc([binary("busbar-c-echo"), bus, "server"])
    procs.append(server)
    with busbar.join(bus, ["py"], token="busbar", timeout=HANG) as ep:
        answer = ep.request("echo-server", "héllo from python".encode(), HANG, ttl=HANG)
        assert answer.data == "HéLLO FROM PYTHON".encode()  # toupper leaves non-ASCII bytes alone
        ep.send("echo-server", b"quit")
    assert server.wait() == 0


def test_the_c_echo_client_asks_python(bus, procs) -> None:
    with busbar.join(bus, ["echo-server"], token="busbar", timeout=HANG) as ep:
        client = Proc([binary("busbar-c-echo"), bus, "client", "one", "two"])
        procs.append(client)
        for want in (b"one", b"two"):
            m = ep.recv(timeout=HANG)
            assert m.is_request and m.data == want
            ep.reply(m, m.data.upper())
        assert ep.recv(timeout=HANG).data == b"quit"
        assert client.line() == "ONE" and client.line() == "TWO"
        assert client.wait() == 0
