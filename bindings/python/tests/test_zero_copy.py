"""recv_with: a message read where it lies, as a read-only memoryview
valid inside a with block, across processes."""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pytest

import busbar
from conftest import HANG, PYTHON, TOKEN, Proc


def pattern(n: int) -> np.ndarray:
    """busbar_tests::pattern(n), the bytes busbar-peer's loan-send sends."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 31 + n + (i >> 8)) % 251).astype(np.uint8)


def test_a_rust_loan_is_read_in_place(join, peer) -> None:
    ep = join(["py"])
    sender, _ = peer("loan-send", "--to", "py", "--sizes", "1048576,100", "--label", "rust")
    for n, fmt in ((1 << 20, 0), (100, 1)):
        with ep.recv_with(timeout=HANG) as m:
            view = m.data
            assert isinstance(view, memoryview) and view.readonly and view.obj is m
            assert (len(view), m.format, len(m)) == (n, fmt, n)
            assert m.data is view  # one view per message
            a = np.frombuffer(view, dtype=np.uint8)
            assert (a == pattern(n)).all()
            with pytest.raises(TypeError):
                view[0] = 1  # read-only
            with pytest.raises(RuntimeError):
                ep.recv(timeout=0)  # the receiver is lent out
            del a
        assert m.released
        with pytest.raises(ValueError):
            view[0]  # released with the block  # noqa: B018
        with pytest.raises(BufferError):
            m.data  # noqa: B018
    assert sender.expect("SENT 2")


def test_a_view_kept_past_the_block_delays_the_release(join, bus) -> None:
    ep = join(["py"])
    child = textwrap.dedent(
        f"""
        import busbar, numpy as np
        with busbar.join({bus!r}, "child", token={TOKEN!r}, timeout=60, controller=False) as ep:
            ep.send("py", np.full(1 << 20, 7, dtype=np.uint8), ttl=60)   # a loan (over 64 KiB)
            ep.send("py", b"small", ttl=60, format=3)                    # the link's ring
            ep.recv(timeout=60)
        """
    )
    proc = Proc([PYTHON, "-c", child])
    kept = None
    with pytest.raises(BufferError):
        with ep.recv_with(timeout=HANG) as m:
            kept = np.frombuffer(m.data, dtype=np.uint8)
            assert kept.sum() == 7 << 20
    assert not m.released  # the array still views it
    with pytest.raises(RuntimeError):
        ep.try_recv()
    del kept
    assert m.released
    with ep.recv_with(timeout=HANG) as m:
        assert (bytes(m.data), m.format) == (b"small", 3)
        source = m.source
    ep.send(source, b"bye")
    assert proc.wait() == 0


def test_recv_with_times_out_and_closes(join) -> None:
    ep = join(["py"])
    with pytest.raises(TimeoutError):
        ep.recv_with(timeout=0.05)
    ep.send("py", b"to myself")
    with ep.recv_with(timeout=HANG) as m:
        assert bytes(m.data) == b"to myself" and m.source == ep.id
    ep.close()
    with pytest.raises(busbar.ClosedError):
        ep.recv_with(timeout=1)


def test_a_lent_request_is_answered(join, cli) -> None:
    ep = join(["py"])
    asking = cli("request", "--to", "py", "--timeout", str(HANG), "lent question")
    with ep.recv_with(timeout=HANG) as m:
        assert m.is_request and bytes(m.data) == b"lent question"
        ep.reply(m, b"lent answer")
    assert asking.line() == "lent answer"


def test_a_loan_is_sent_and_read_in_place(join, bus) -> None:
    """Endpoint.loan: a numpy array written in the sender's shared memory
    and sent as it is; the receiver reads it where it lies (numpy over the
    message itself)."""
    ep = join(["py"])
    child = textwrap.dedent(
        f"""
        import busbar, numpy as np
        with busbar.join({bus!r}, "child", token={TOKEN!r}, timeout=60, controller=False) as ep:
            for i, n in enumerate((4 << 20, 100)):
                loan = ep.loan(n, format=7 + i)
                a = np.frombuffer(loan, dtype=np.uint8)
                a[:] = np.arange(n) % 251
                try:
                    ep.send("py", loan, ttl=60)
                    raise SystemExit("a loan went out with an array viewing it")
                except BufferError:
                    pass
                del a
                ep.send("py", loan, ttl=60)
                assert loan.sent
            ep.recv(timeout=60)
        """
    )
    proc = Proc([PYTHON, "-c", child])
    source = 0
    for i, n in enumerate((4 << 20, 100)):
        m = ep.recv(timeout=HANG)
        assert (len(m), m.format) == (n, 7 + i)
        view = memoryview(m)
        assert view.readonly and view.obj is m and len(view) == n
        a = np.frombuffer(m, dtype=np.uint8)
        assert not a.flags.writeable
        assert (a == np.arange(n) % 251).all()
        assert m.data == a.tobytes() and m.data is m.data  # one copy, made once
        source = m.source
        del a, view
    ep.send(source, b"bye")
    assert proc.wait() == 0


def test_loan_rules(join) -> None:
    ep = join(["py"])
    other = join(["other"])
    loan = ep.loan(1000, format=5)
    assert (loan.size, len(loan), loan.format, loan.sent) == (1000, 1000, 5, False)
    view = memoryview(loan)
    assert not view.readonly
    view[:3] = b"abc"
    with pytest.raises(BufferError):
        ep.send("other", loan, ttl=HANG)  # a view is alive
    view.release()
    with pytest.raises(ValueError):
        ep.send("other", loan, ttl=HANG, fds=[0])  # a loan goes alone
    # (ttl: `ep` may not have heard of `other` yet)
    ep.send("other", loan, ttl=HANG)
    assert loan.sent
    with pytest.raises(ValueError):
        ep.send("other", loan, ttl=HANG)  # sent already
    with pytest.raises(BufferError):
        memoryview(loan)
    m = other.recv(timeout=HANG)
    assert (bytes(memoryview(m)[:3]), m.format, len(m)) == (b"abc", 5, 1000)
    with pytest.raises(ValueError):
        ep.send(-1, b"x")  # not an endpoint id
    # The selector kept for a stream of sends to one place follows `to`.
    for to in ("other", "other", "py", busbar.Expr.leaf("other"), other.id, "py"):
        ep.send(to, str(to).encode(), ttl=HANG)
    got = [other.recv(timeout=HANG).data for _ in range(4)] + [ep.recv(timeout=HANG).data for _ in range(2)]
    assert got == [b"other", b"other", b"other", str(other.id).encode(), b"py", b"py"]
    assert other.try_recv() is None


@pytest.mark.parametrize("spin_us", [None, 0])
def test_a_stream_of_loans_waits_for_chunks_a_slow_receiver_gives_back(join, bus, spin_us) -> None:
    """More 16 MiB loans than the pool has chunks, to a receiver in another
    process that keeps up at first, then takes 5 ms a message, then keeps up
    again: the sender's loans wait for chunks (watching the pool, then
    sleeping; spin_us=0: sleeping at once) and every array arrives, in
    order, with the number written into it."""
    ep = join(["py"])
    kw = "" if spin_us is None else f", spin_us={spin_us!r}"
    child = textwrap.dedent(
        f"""
        import busbar, numpy as np
        with busbar.join({bus!r}, "child", token={TOKEN!r}, timeout=60, controller=False{kw}) as ep:
            for i in range(60):
                loan = ep.loan(16 << 20)
                a = np.frombuffer(loan, dtype=np.uint64)
                a[0], a[-1] = i, ~np.uint64(i)
                del a
                ep.send("py", loan, ttl=60)
            ep.recv(timeout=60)
        """
    )
    proc = Proc([PYTHON, "-c", child])
    source = 0
    for i in range(60):
        m = ep.recv(timeout=HANG)
        a = np.frombuffer(m, dtype=np.uint64)
        assert (len(m), int(a[0]), int(a[-1])) == (16 << 20, i, int(~np.uint64(i)))
        del a
        source = m.source
        del m
        if 20 <= i < 40:
            time.sleep(0.005)  # slower than the sender's 2 ms watch of the pool
    ep.send(source, b"bye")
    assert proc.wait() == 0
