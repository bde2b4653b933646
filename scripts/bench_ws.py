"""Websocket layer benchmark: server CPU per frame in and per frame out, nothing else.

A Quart app shaped like the agent websocket (reads each frame, answers it with one frame
through ``WireWriter``) is served by ``serve_http`` in this process; clients in another
process keep a window of frames in flight on each of ``--sockets`` websockets. The
figure is the server process's CPU time over the run divided by the round trips (one
frame in, one out), so the app's own work is a few microseconds and the rest is the
HTTP server, the websocket protocol and Quart. Run it with ``--lcx-root`` (a source tree,
e.g. ``git archive main``) to measure another lcx with the same venv. ``--handler-frames N``
measures the agent frame handler alone instead (N message frames, in this process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from functools import partial
from typing import Any


def _serve(port_queue: Any, done: Any, lcx_root: str | None) -> None:
    if lcx_root:
        sys.path.insert(0, lcx_root)
    import trio
    from quart import websocket
    from quart_trio import QuartTrio

    from lcx.api import ws_wire
    from lcx.api.http_server import serve_http

    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def handler() -> None:
        reading = getattr(ws_wire, "reading", None)
        if reading is None:  # before lcx's own websocket connection: Quart reads
            ws_wire.decline_deflate()  # type: ignore[attr-defined]
            await websocket.accept()
            wire = ws_wire.WireWriter()
            while True:
                await wire.write([(await websocket.receive()).encode()])
        async with reading() as receive:
            await websocket.accept()
            wire = ws_wire.WireWriter()
            while True:
                try:
                    frame = await receive()
                except ws_wire.ConnectionClosing:
                    return
                await wire.write([frame.encode() if isinstance(frame, str) else frame])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, app, host="127.0.0.1",
                                                  port=0))
            port_queue.put(binding.port)
            await trio.to_thread.run_sync(done.wait)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _clients(port: int, sockets: int, frames: int, window: int) -> float:
    import trio
    from trio_websocket import open_websocket_url

    payload = json.dumps({"type": "event", "event": "SEND_MESSAGE", "ref": "r1", "data": {
        "conversationId": "c-0123456789", "text": "hello there, how are you?"}})

    async def one() -> None:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
            for _ in range(window):
                await ws.send_message(payload)
            for n in range(frames):
                await ws.get_message()
                if n + window < frames:
                    await ws.send_message(payload)
            await ws._stream.aclose()

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(sockets):
            nursery.start_soon(one)
    return time.perf_counter() - began


def _handler_frames(count: int, lcx_root: str | None) -> float:
    """CPU per agent message frame through ``FrameHandler.handle`` alone: decode, checks,
    the ask (to a conversation that answers at once) and the ack, in this process."""
    if lcx_root:
        sys.path.insert(0, lcx_root)
    from types import SimpleNamespace

    import msgspec
    import trio

    from lcx.api.agent_frames import FrameHandler
    from lcx.auth import Principal
    from lcx.livechat.commands import PostResult

    class Conversations:
        async def ask(self, key: str, message: object) -> PostResult:
            return PostResult(id="m1", conversation_id=key, request_id="r1", seq=7)

    acks: list[bytes] = []
    handler = FrameHandler(
        SimpleNamespace(conversations=Conversations()),  # type: ignore[arg-type]
        Principal(sub="a1", org="o1", scopes=frozenset({"agent"}), name="Ann",
                  groups=("g1",)),
        lambda frame: acks.append(msgspec.json.encode(frame)))
    frames = [msgspec.json.encode({"type": "message", "ref": f"r{n}", "data": {
        "conversationId": "c-0123456789", "text": f"R 12 {n} 1234567890123",
        "id": f"x{n}"}}).decode() for n in range(count)]

    async def run() -> float:
        for frame in frames[:1000]:  # warm up
            await handler.handle(frame)
        began = time.process_time()
        for frame in frames:
            await handler.handle(frame)
        return (time.process_time() - began) / count

    return trio.run(run)


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Run the benchmark and print CPU per round trip."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--frames", type=int, default=2000, help="round trips per socket")
    parser.add_argument("--window", type=int, default=8, help="frames in flight per socket")
    parser.add_argument("--lcx-root", default=None)
    parser.add_argument("--label", default="")
    parser.add_argument("--handler-frames", type=int, default=0,
                        help="only the agent frame handler: CPU per message frame, in process")
    args = parser.parse_args()
    if args.handler_frames:
        per_frame = _handler_frames(args.handler_frames, args.lcx_root)
        print(json.dumps({"label": args.label, "frames": args.handler_frames,
                          "cpu_us_per_message_frame": round(per_frame * 1e6, 1)}))
        return
    import trio

    ports: Any = multiprocessing.Queue()
    done = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(ports, done, args.lcx_root),
                                     name="lcx-bench-ws")
    server.start()
    try:
        port = ports.get(timeout=30)
        print(f"server pid {server.pid}", file=sys.stderr, flush=True)
        assert server.pid is not None
        trio.run(_clients, port, 2, 50, 4)  # warm up
        before = _cpu(server.pid)
        seconds = trio.run(_clients, port, args.sockets, args.frames, args.window)
        used = _cpu(server.pid) - before
    finally:
        done.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    trips = args.sockets * args.frames
    print(json.dumps({"label": args.label, "round_trips": trips,
                      "seconds": round(seconds, 2),
                      "round_trips_per_s": round(trips / seconds),
                      "server_cpu_us_per_round_trip": round(used / trips * 1e6, 1)}))


if __name__ == "__main__":
    main()
