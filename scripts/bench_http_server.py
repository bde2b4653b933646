"""HTTP server benchmark: server CPU per request of ``serve_http`` alone, with a bare app.

Starts ``serve_http`` in its own process with a bare ASGI app that reads the body and
answers a small sized JSON (what ``POST /messages`` looks like on the wire), then sends
``--requests`` keep-alive ``POST /messages`` over ``--connections`` connections, each
connection one request after the other (as the bot client does), and prints the
server's CPU per request (user+system from ``/proc/<pid>/stat``) and the client's
round-trip p50/p99. ``--lcx-root DIR`` serves with the lcx of another source tree
(e.g. main unpacked with ``git archive``), to compare servers side by side::

    .venv/bin/python scripts/bench_http_server.py --lcx-root /tmp/before
    .venv/bin/python scripts/bench_http_server.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

SERVER = """
import sys, trio
import lcx.api.http_server
from lcx.api.http_server import serve_http

BODY = b'{"id":"01J0000000000000000000000","seq":1,"conversationId":"c-1"}'

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 202, "headers": [
        (b"content-type", b"application/json"), (b"x-request-id", b"r-1"),
        (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY, "more_body": False})

async def main():
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(lambda task_status: serve_http(
            app, host="127.0.0.1", port=0, task_status=task_status))
        print(binding.port, lcx.api.http_server.__file__, flush=True)

trio.run(main)
"""

REQUEST = (b"POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x.y.z\r\n"
           b"Content-Type: application/json\r\nAccept: */*\r\nUser-Agent: bench\r\n"
           b"Content-Length: 52\r\n\r\n"
           b'{"conversationId":"c-1","id":"m-1","text":"hello!!"}')


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def client(port: int, count: int, latencies: list[float]) -> None:
    """``count`` requests one after the other on one connection (opened again when the
    server closes it: hypercorn does after 1,000 requests)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    done = 0
    while done < count:
        started = time.perf_counter()
        await stream.send_all(REQUEST)
        got = b""
        while not got.endswith(b'"c-1"}'):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            got += chunk
        if not got.endswith(b'"c-1"}'):
            await stream.aclose()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            continue
        latencies.append(time.perf_counter() - started)
        done += 1
    await stream.aclose()


async def measure(port: int, pid: int, requests: int, connections: int
                  ) -> tuple[tuple[float, float], list[float]]:
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:  # warm-up
        for _ in range(connections):
            nursery.start_soon(client, port, 50, [])
    before = cpu_seconds(pid)
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client, port, requests // connections, latencies)
    after = cpu_seconds(pid)
    return (after[0] - before[0], after[1] - before[1]), latencies


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--lcx-root", help="serve with the lcx of this source tree")
    arguments = parser.parse_args()
    env = dict(os.environ)
    if arguments.lcx_root:
        env["PYTHONPATH"] = str(Path(arguments.lcx_root).resolve())
    # Not from this checkout's directory: "-c" puts the working directory first on
    # sys.path, ahead of PYTHONPATH.
    server = subprocess.Popen([sys.executable, "-c", SERVER], env=env, cwd="/",
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port_text, served_by = server.stdout.readline().split()
        port = int(port_text)
        print(f"serving with {served_by}")
        cpu, latencies = trio.run(measure, port, server.pid, arguments.requests,
                                  arguments.connections)
    finally:
        server.kill()
        server.wait()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    user, system = (seconds / len(latencies) * 1e6 for seconds in cpu)
    print(f"{len(latencies)} requests over {arguments.connections} connections: "
          f"server cpu/request {user + system:.0f} us (user {user:.0f}, system "
          f"{system:.0f}), round trip "
          f"p50 {statistics.median(latencies) * 1e3:.2f} ms p99 {p99 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
