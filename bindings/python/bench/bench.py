"""Python -> Python across processes: busbar against iceoryx2's Python
binding, pyzmq (ipc://, PUSH/PULL) and multiprocessing.Pipe, in one run,
with the same sizes and process layout; prints a markdown table.

    bash bindings/python/bench/run.sh        # makes its venv, installs the peers, runs this

Every case runs two fresh processes (this file with --role): a receiver
that reports, and a sender. Throughput: the receiver times from the first
message to the last. Latency: ping-pong, half the round trip, p50/p99.
16 MiB: a numpy array per message; the sender writes element 0 of each
array (the message number) and the receiver reads element 0 of the array
it gets (numpy over the received buffer): busbar sends a loan
(Endpoint.loan: the array is a chunk of the endpoint's shared pool, sent as
it is; the receiver reads numpy.frombuffer(message); --busbar-array region
sends a Region from a Registry instead), iceoryx2 a
loaned slice (likewise), pyzmq the array with copy=False (the kernel copies
it through the socket) and multiprocessing send_bytes (likewise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from typing import Any, Callable

# Every process here (the driver and every library's roles) imports numpy,
# whose OpenBLAS starts a thread per core that spins for a while: on a small
# machine they take the processors the two sides need (4-5 % of each role
# process, 18 % of the driver's, in perf). No case computes with numpy: one
# thread (unless the caller says otherwise), set before numpy is imported
# and inherited by the roles.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

LIBS = ["busbar", "iceoryx2", "pyzmq", "multiprocessing"]
BIG = 16 << 20


# ----------------------------------------------------------------------------
# The libraries. Each gives (send(bytes-like), recv() -> buffer) for one
# direction, and for 16 MiB (send_array(i), recv_array() -> int).


class Busbar:
    def __init__(self, name: str, role: str, regions: bool) -> None:
        import busbar

        self.busbar = busbar
        self.regions = regions
        me, self.to = {"recv": ("rx", "tx"), "send": ("tx", "rx"), "pong": ("pong", "ping"), "ping": ("ping", "pong")}[role]
        self.ep = busbar.join(name, [me], token="bench", timeout=30)
        self.registry = busbar.Registry()

    def wait_peer(self) -> None:
        deadline = time.monotonic() + 30
        while not any(self.to in e.label for e in self.ep.endpoints()):
            if time.monotonic() > deadline:
                raise SystemExit(f"busbar: {self.to} never joined")
            time.sleep(0.001)

    def sender(self) -> Callable[[Any], None]:
        send, to = self.ep.send, self.busbar.Expr.leaf(self.to)
        return lambda data: send(to, data)

    def receiver(self) -> Callable[[], Any]:
        recv = self.ep.recv
        return lambda: recv().data

    def send_array(self, i: int) -> None:
        if self.regions:
            r = self.registry.alloc(BIG)
            a = np.frombuffer(r, dtype=np.uint64)
            a[0] = i
            del a
            self.ep.send(self.to, b"", regions=[r])
            r.close()
            return
        # A loan: a chunk of the endpoint's pool, written in place and sent
        # as it is; the array is the loan's memory.
        loan = self.ep.loan(BIG)
        a = np.frombuffer(loan, dtype=np.uint64)
        a[0] = i
        del a
        self.ep.send(self.to, loan)

    def recv_array(self) -> int:
        m = self.ep.recv()
        if self.regions:
            r = m.regions[0]
            a = np.frombuffer(r, dtype=np.uint64)
            i = int(a[0])
            del a
            r.close()
            return i
        # The message's payload where it arrived (the sender's loan).
        return int(np.frombuffer(m, dtype=np.uint64)[0])


class Iceoryx2:
    def __init__(self, name: str, role: str, size: int) -> None:
        import ctypes

        import iceoryx2 as iox2

        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self.iox2 = iox2
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        queue = max(2, min(256, (4 << 20) // max(size, 1)))

        def service(topic: str) -> Any:
            return (
                self.node.service_builder(iox2.ServiceName.new(f"{name}/{topic}"))
                .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                .enable_safe_overflow(False)
                .history_size(0)
                .subscriber_max_buffer_size(queue)
                .subscriber_max_borrowed_samples(2)
                .open_or_create()
            )

        pub_topic, sub_topic = {"recv": (None, "fwd"), "send": ("fwd", None), "pong": ("back", "fwd"), "ping": ("fwd", "back")}[role]
        self.sub = service(sub_topic).subscriber_builder().create() if sub_topic else None
        self.pub = (
            service(pub_topic)
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .create()
            if pub_topic
            else None
        )

    def wait_peer(self) -> None:
        self.pub.update_connections()

    def sender(self) -> Callable[[Any], None]:
        import ctypes

        pub, memmove = self.pub, ctypes.memmove

        def send(data: Any) -> None:
            # The publisher is built with RetryUntilDelivered, but this
            # binding's send drops a sample a full subscriber cannot take
            # (it returns 0 receivers): retry here until it is delivered.
            while True:
                s = pub.loan_slice_uninit(len(data))
                memmove(s.payload().as_ptr(), data, len(data))
                if s.assume_init().send() > 0:
                    return

        return send

    def receiver(self) -> Callable[[], Any]:
        import ctypes

        sub, string_at = self.sub, ctypes.string_at

        def recv() -> Any:
            while (s := sub.receive()) is None:  # spin: iceoryx2's receive polls
                pass
            p = s.payload()
            return string_at(p.as_ptr(), p.len())

        return recv

    def send_array(self, i: int) -> None:
        while True:  # see sender()
            s = self.pub.loan_slice_uninit(BIG)
            np.frombuffer(s.payload().as_memory_view(), dtype=np.uint64)[0] = i
            if s.assume_init().send() > 0:
                return

    def recv_array(self) -> int:
        while (s := self.sub.receive()) is None:
            pass
        a = np.frombuffer(s.payload().as_memory_view(), dtype=np.uint64)
        i = int(a[0])
        del a, s
        return i


class Pyzmq:
    def __init__(self, name: str, role: str) -> None:
        import zmq

        self.ctx = zmq.Context()
        base = f"ipc:///tmp/{name}"
        self.push = self.pull = None
        if role in ("recv", "pong"):
            self.pull = self.ctx.socket(zmq.PULL)
            self.pull.bind(f"{base}.fwd")
        if role == "pong":
            self.push = self.ctx.socket(zmq.PUSH)
            self.push.connect(f"{base}.back")
        if role in ("send", "ping"):
            self.push = self.ctx.socket(zmq.PUSH)
            self.push.connect(f"{base}.fwd")
        if role == "ping":
            self.pull = self.ctx.socket(zmq.PULL)
            self.pull.bind(f"{base}.back")
        self.array = np.zeros(BIG // 8, dtype=np.uint64)

    def wait_peer(self) -> None:
        pass

    def sender(self) -> Callable[[Any], None]:
        return self.push.send

    def receiver(self) -> Callable[[], Any]:
        return self.pull.recv

    def send_array(self, i: int) -> None:
        self.array[0] = i
        self.push.send(self.array, copy=False)

    def recv_array(self) -> int:
        frame = self.pull.recv(copy=False)
        return int(np.frombuffer(frame.buffer, dtype=np.uint64)[0])


class Mp:
    def __init__(self, fd: int) -> None:
        from multiprocessing.connection import Connection

        self.conn = Connection(fd)
        self.array = np.zeros(BIG // 8, dtype=np.uint64)

    def wait_peer(self) -> None:
        pass

    def sender(self) -> Callable[[Any], None]:
        return self.conn.send_bytes

    def receiver(self) -> Callable[[], Any]:
        return self.conn.recv_bytes

    def send_array(self, i: int) -> None:
        self.array[0] = i
        self.conn.send_bytes(self.array)

    def recv_array(self) -> int:
        return int(np.frombuffer(self.conn.recv_bytes(), dtype=np.uint64)[0])


def open_lib(a: argparse.Namespace) -> Any:
    if a.lib == "busbar":
        return Busbar(a.name, a.role, a.busbar_array == "region")
    if a.lib == "iceoryx2":
        return Iceoryx2(a.name, a.role, a.size)
    if a.lib == "pyzmq":
        return Pyzmq(a.name, a.role)
    return Mp(a.fd)


# ----------------------------------------------------------------------------
# The roles.


def role(a: argparse.Namespace) -> None:
    import signal

    signal.alarm(120)  # a hang guard: no case takes anywhere near this
    lib = open_lib(a)
    print("READY", flush=True)
    if a.role != "recv":
        lib.wait_peer()
    result: dict[str, Any] = {}
    if a.scenario == "throughput":
        if a.role == "send":
            send, data = lib.sender(), b"x" * a.size
            for _ in range(a.count):
                send(data)
        else:
            recv = lib.receiver()
            recv()
            t0 = time.perf_counter()
            for _ in range(a.count - 1):
                recv()
            dt = time.perf_counter() - t0
            result = {"rate": (a.count - 1) / dt}
    elif a.scenario == "array":
        if a.role == "send":
            for i in range(a.count):
                lib.send_array(i)
        else:
            got = lib.recv_array()
            t0 = time.perf_counter()
            for _ in range(a.count - 1):
                got = lib.recv_array()
            dt = time.perf_counter() - t0
            if got != a.count - 1:
                raise SystemExit(f"array: last message was {got}, not {a.count - 1}")
            result = {"rate": (a.count - 1) / dt}
    elif a.scenario == "latency":
        send, recv, data = lib.sender(), lib.receiver(), b"p" * a.size
        if a.role == "pong":
            for _ in range(a.count + a.warmup):
                send(recv())
        else:
            samples = []
            clock = time.perf_counter_ns
            for i in range(a.count + a.warmup):
                t0 = clock()
                send(data)
                recv()
                if i >= a.warmup:
                    samples.append((clock() - t0) / 2)
            samples.sort()
            result = {
                "p50_us": samples[len(samples) // 2] / 1000,
                "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            }
    if result:
        print("RESULT " + json.dumps(result), flush=True)
    # Let the other side finish with this process's memory still there
    # (iceoryx2 and busbar hand out shared memory).
    sys.stdin.read()


# ----------------------------------------------------------------------------
# The driver.


def run_case(lib: str, scenario: str, size: int, count: int, warmup: int = 0, more: list[str] | None = None) -> dict[str, Any]:
    name = f"bbpy{os.getpid()}{uuid.uuid4().hex[:8]}"
    first, second = ("recv", "send") if scenario != "latency" else ("pong", "ping")
    fds: list[int] = []
    extra: list[list[str]] = [[], []]
    if lib == "multiprocessing":
        import multiprocessing

        a_end, b_end = multiprocessing.Pipe(duplex=scenario == "latency")
        fds = [a_end.fileno(), b_end.fileno()]
        # Pipe(duplex=False) gives (reader, writer).
        extra = [["--fd", str(fds[0])], ["--fd", str(fds[1])]]
    common = ["--lib", lib, "--scenario", scenario, "--size", str(size), "--count", str(count), "--warmup", str(warmup), "--name", name]
    common += more or []

    def start(r: str, more: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, __file__, "--role", r, *common, *more],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=fds,
        )

    p1 = start(first, extra[0])
    assert p1.stdout is not None and p1.stdout.readline().strip() == "READY"
    p2 = start(second, extra[1])
    assert p2.stdout is not None and p2.stdout.readline().strip() == "READY"
    reporter = p2 if scenario == "latency" else p1
    assert reporter.stdout is not None
    line = reporter.stdout.readline()
    for p in (p1, p2):
        assert p.stdin is not None
        p.stdin.close()
    for p in (p1, p2):
        p.wait(timeout=120)
    if not line.startswith("RESULT "):
        raise SystemExit(f"{lib} {scenario} {size}: no result ({line!r}); exit codes {p1.returncode} {p2.returncode}")
    return json.loads(line[len("RESULT "):])


def rate(r: dict[str, Any], size: int) -> str:
    v = r["rate"]
    text = f"{v / 1e6:.2f} M/s" if v >= 1e6 else f"{v / 1e3:.0f} k/s"
    if size >= 1 << 20:
        text = f"{v * size / 1e9:.1f} GB/s ({v:,.0f} arrays/s)"
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role")
    p.add_argument("--lib", default="busbar")
    p.add_argument("--scenario")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--name", default="")
    p.add_argument("--fd", type=int, default=-1)
    p.add_argument(
        "--busbar-array",
        choices=["loan", "region"],
        default="loan",
        help="how busbar sends the 16 MiB array: a loan (Endpoint.loan; default) or a Region from a Registry",
    )
    p.add_argument("--cases", default="64,1024,latency,array", help="cases to run, comma-separated")
    p.add_argument("--only", default=",".join(LIBS), help="libraries to run, comma-separated")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    a = p.parse_args()
    if a.role:
        role(a)
        return
    libs = [lib for lib in LIBS if lib in a.only.split(",")]
    n = lambda c: max(10, int(c * a.scale))  # noqa: E731
    rows: dict[str, list[str]] = {
        "64 B, messages/s": [],
        "1 KiB, messages/s": [],
        "64 B one-way latency p50 / p99": [],
        "16 MiB numpy array per message": [],
    }
    cases = a.cases.split(",")
    more = ["--busbar-array", a.busbar_array]
    for lib in libs:
        print(f"{lib} ...", file=sys.stderr, flush=True)
        if "64" in cases:
            rows["64 B, messages/s"].append(rate(run_case(lib, "throughput", 64, n(200_000)), 64))
        if "1024" in cases:
            rows["1 KiB, messages/s"].append(rate(run_case(lib, "throughput", 1024, n(200_000)), 1024))
        if "latency" in cases:
            lat = run_case(lib, "latency", 64, n(20_000), warmup=n(2_000))
            rows["64 B one-way latency p50 / p99"].append(f"{lat['p50_us']:.1f} / {lat['p99_us']:.1f} µs")
        if "array" in cases:
            # Zero-copy libraries move an array in microseconds, copying ones in
            # milliseconds: 50,000 and 200 arrays keep each run under a second
            # and long enough that setting up (the pools' first regions) is
            # not most of it.
            arrays = n(50_000) if lib in ("busbar", "iceoryx2") else n(200)
            rows["16 MiB numpy array per message"].append(rate(run_case(lib, "array", BIG, arrays, more=more), BIG))
    rows = {k: v for k, v in rows.items() if v}
    names = {"busbar": "busbar", "iceoryx2": "iceoryx2 (spin)", "pyzmq": "pyzmq ipc:// PUSH/PULL", "multiprocessing": "multiprocessing.Pipe"}
    versions = versions_of(libs)
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores; {versions}\n")
    print("| Python → Python | " + " | ".join(names[lib] for lib in libs) + " |")
    print("|---|" + "---|" * len(libs))
    for row, cells in rows.items():
        print(f"| {row} | " + " | ".join(cells) + " |")


def versions_of(libs: list[str]) -> str:
    out = []
    for lib in ("busbar", "iceoryx2", "pyzmq"):
        if lib in libs:
            try:
                from importlib.metadata import version

                out.append(f"{lib} {version(lib)}")
            except Exception:  # noqa: BLE001
                out.append(lib)
    if "pyzmq" in libs:
        import zmq

        out.append(f"libzmq {zmq.zmq_version()}")
    out.append(f"numpy {np.__version__}")
    return ", ".join(out)


if __name__ == "__main__":
    main()
