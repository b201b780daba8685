"""Python <-> Rust across processes: the `busbar` command and busbar-peer's
`bytes-agent` on the other side."""

from __future__ import annotations

import os

import numpy as np
import pytest

import busbar
from conftest import HANG, wait_listed


def test_python_to_rust_unicast_and_multicast(join, cli) -> None:
    ep = join(["py"])
    a = cli("listen", "--label", "rust,a", "--count", "2")
    b = cli("listen", "--label", "rust,b", "--count", "1")
    wait_listed(ep, "rust", 2)
    ep.send("rust & a", b"to a only")
    ep.send("rust", "to all".encode(), multicast=True)
    assert a.line() == "to a only"
    assert a.line() == "to all"
    assert b.line() == "to all"
    assert a.wait() == 0 and b.wait() == 0


def test_rust_to_python_unicast_and_multicast(join, cli) -> None:
    one = join(["py", "one"])
    two = join(["py", "two"])
    assert cli("send", "--to", "py & two", "for two").wait() == 0
    m = two.recv(timeout=HANG)
    assert (m.data, m.format, m.multicast, m.expr) == (b"for two", 0, False, "py & two")
    assert cli("send", "--to", "py", "--multicast", "for both").wait() == 0
    assert one.recv(timeout=HANG).data == b"for both"
    assert two.recv(timeout=HANG).data == b"for both"
    with pytest.raises(TimeoutError):
        one.recv(timeout=0.05)


def test_expressions_text_and_built_pick_the_receiver(join, peer) -> None:
    ep = join(["py"])
    cpu, cpu_id = peer("bytes-agent", "--label", "rust,cpu")
    gpu, gpu_id = peer("bytes-agent", "--label", "rust,gpu")
    wait_listed(ep, "rust", 2)
    ep.send("rust & !gpu", b"echo text")
    m = ep.recv(timeout=HANG)
    assert (m.data, m.source) == (b"echo text", cpu_id)
    built = busbar.Expr.leaf("rust") & ~busbar.Expr("cpu")
    assert str(built) == "rust & !cpu"
    ep.send(built, b"echo built", format=7)
    m = ep.recv(timeout=HANG)
    assert (m.data, m.format, m.source) == (b"echo built", 7, gpu_id)
    assert gpu.line() == "ECHO 10 format=7 unicast(rust & !cpu)"
    # Answer by id: the message's source.
    ep.send(m.source, b"echo by id")
    assert ep.recv(timeout=HANG).source == gpu_id
    ep.send("rust", b"END", multicast=True)
    assert cpu.line() == "ECHO 9 format=0 unicast(rust & !gpu)"
    assert gpu.line().startswith("ECHO 10 format=0 endpoint(")
    assert cpu.line() == "END 1" and gpu.line() == "END 2"


def test_ttl_waits_for_the_receiver_and_no_ttl_is_no_route(join, cli) -> None:
    ep = join(["py"])
    with pytest.raises(busbar.NoRouteError) as e:
        ep.send("late", b"nobody")
    assert isinstance(e.value, busbar.Error) and e.value.code == "NO_ROUTE"
    ep.send("late", b"waited", ttl=HANG)
    late = cli("listen", "--label", "late", "--count", "1")
    assert late.line() == "waited"
    assert late.wait() == 0


def test_request_and_reply_both_ways(join, peer, cli) -> None:
    ep = join(["py"])
    agent, agent_id = peer("bytes-agent", "--label", "rust")
    answer = ep.request("rust", b"echo ping", HANG, ttl=HANG)
    assert (answer.data, answer.source) == (b"echo ping", agent_id)
    asking = cli("request", "--to", "py", "--timeout", str(HANG), "question")
    m = ep.recv(timeout=HANG)
    assert m.is_request and m.data == b"question"
    ep.reply(m, b"answer")
    assert asking.line() == "answer"
    assert asking.wait() == 0
    plain = ep.request("rust", b"echo x", HANG)
    with pytest.raises(busbar.NotARequestError):
        ep.reply(plain, b"no")


def test_pipe_write_end_to_rust_and_fd_from_rust(join, peer) -> None:
    ep = join(["py"])
    agent, _ = peer("bytes-agent", "--label", "rust")
    wait_listed(ep, "rust")
    r, w = os.pipe()
    with open(w, "wb") as wfile:
        ep.send("rust", b"write-fds hello from rust", fds=[wfile])  # an object with fileno()
    # The caller kept its own descriptor: it is closed now (with-block) and
    # only the peer's duplicate was open until it wrote and closed it.
    assert ep.recv(timeout=HANG).data == b"wrote 1"
    with open(r, "rb") as rfile:
        assert rfile.read() == b"hello from rust"

    ep.send("rust", b"give-fd made in rust")
    m = ep.recv(timeout=HANG)
    assert m.data == b"fd" and len(m.fds) == 1
    with m.fds[0] as fd:
        assert isinstance(fd, busbar.Fd)
        assert os.read(fd.fileno(), 100) == b"made in rust"
    assert fd.closed
    with pytest.raises(ValueError):
        fd.fileno()
    agent.kill()


def test_region_written_in_python_seen_in_rust_and_back(join, peer) -> None:
    ep = join(["py"])
    peer("bytes-agent", "--label", "rust")
    wait_listed(ep, "rust")
    r = busbar.Region(4096)
    view = memoryview(r)
    view[:11] = b"from python"
    assert r.ref_count == 1
    ep.send("rust", b"check-region from python", regions=[r])
    answer = ep.recv(timeout=HANG).data.decode()
    assert answer.startswith("region true ref_count=2 "), answer
    assert bytes(view[:9]) == b"from rust"  # written by the peer, seen in place
    assert r.ref_count == 1  # the peer's handle is gone
    view.release()
    r.close()

    ep.send("rust", b"give-region 1048576")
    m = ep.recv(timeout=HANG)
    assert m.data == b"region"
    region = m.regions[0]
    assert region.size == 1 << 20 and region.ref_count == 2
    a = np.frombuffer(region, dtype=np.uint8)
    assert (a == np.arange(1 << 20) % 251).all()
    a[:11] = np.frombuffer(b"from python", dtype=np.uint8)  # writable, in place
    del a
    region.close()
    ep.send(m.source, b"done")
    assert ep.recv(timeout=HANG).data == b"region-back true ref_count=1"


def test_numpy_array_through_a_region_without_a_copy(join, peer) -> None:
    ep = join(["py"])
    peer("bytes-agent", "--label", "rust")
    wait_listed(ep, "rust")
    r = busbar.Region(16 << 20)
    a = np.frombuffer(r, dtype=np.float64)
    b = np.frombuffer(r, dtype=np.float64)
    assert np.shares_memory(a, b)  # both are the region's memory, not copies
    a[:] = np.arange(a.size, dtype=np.float64)
    assert b[12345] == 12345.0
    expect = int(np.frombuffer(r, dtype=np.uint8).sum(dtype=np.uint64))
    prefix = a[:1].tobytes()  # 0.0: eight zero bytes (UTF-8, no space)
    ep.send("rust", b"check-region " + prefix, regions=[r])
    answer = ep.recv(timeout=HANG).data.decode()
    assert answer.split()[1:] == ["true", "ref_count=2", f"sum={expect}"]
    assert r.ref_count == 1
    # The peer wrote "from rust" over the first bytes: the array sees it.
    assert np.frombuffer(r, dtype=np.uint8)[:9].tobytes() == b"from rust"
    with pytest.raises(BufferError):
        r.close()  # the arrays still view it
    del a, b
    r.close()
