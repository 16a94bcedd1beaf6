"""The sandbox's own cost of delivering events: how fast its senders post a storm's events to a handler that
does nothing, and the CPU each post costs the sandbox's process. The storm benchmark runs the sandbox on the
same two cores as bxsync, so every millisecond a sandbox sender spends is one bxsync does not get; this says
how much of a storm's time is the emulated Bitrix's, not bxsync's.

    .venv/bin/python bench/delivery_bench.py [--events 20000] [--senders 4]

The handler is a separate process (asyncio, keep-alive, answers 200 at once). One run on a shared machine:
compare numbers measured in one sitting. tests/bench/test_delivery_bench_small.py runs it at a tiny size.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import time
from pathlib import Path

# Beside this script; importing it puts the code measured on sys.path (BXSYNC_BENCH_CODE: another commit's).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_report  # noqa: F401

from bitrix_sandbox.events import EventDispatcher
from bitrix_sandbox.faults import Faults
from bitrix_sandbox.store import Counters


def _handler_serve(sock: socket.socket) -> None:
    """Answer every POST with 200 over kept-alive connections, reading nothing but what HTTP needs."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def delivery_run(*, events: int, senders: int) -> dict[str, float]:
    """Deliver `events` ONCRMDEALUPDATE events (a storm's: each sent twice, shuffled within half a second)
    with `senders` delivery workers; the rate and the sandbox's CPU per post."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    handler = multiprocessing.get_context("spawn").Process(target=_handler_serve, args=(sock,), daemon=True)
    handler.start()
    faults = Faults()
    faults.set(duplicate_rate=1.0, reorder_window=0.5)
    dispatcher = EventDispatcher(
        counters=Counters(),
        faults=faults,
        domain="bench.bitrix24.test",
        client_endpoint="https://bench.bitrix24.test/rest/",
        member_id="bench",
        application_token="bench",  # noqa: S106 - not a secret: the handler checks nothing
        handler_url=f"http://127.0.0.1:{sock.getsockname()[1]}/api/bitrix/crm/",
        workers=senders,
    )
    try:
        dispatcher.start()
        started, cpu = time.monotonic(), time.process_time()
        for n in range(events // 2):
            dispatcher.emit("ONCRMDEALUPDATE", {"ID": n % 1000 + 1})
        if not dispatcher.wait_idle(timeout=600):
            raise SystemExit("the events were not delivered within 10 minutes")
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    finally:
        dispatcher.stop()
        handler.kill()
        sock.close()
    posts = (events // 2) * 2
    return {
        "posts": posts,
        "seconds": seconds,
        "per_second": posts / seconds,
        "cpu_ms_per_post": cpu * 1000 / posts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="posts in all (each event is sent twice)")
    parser.add_argument("--senders", type=int, default=4, help="delivery workers (the storm's: 4)")
    args = parser.parse_args()
    result = delivery_run(events=args.events, senders=args.senders)
    print(
        f"{result['posts']:.0f} posts in {result['seconds']:.1f} s = {result['per_second']:.0f}/s, "
        f"{result['cpu_ms_per_post']:.2f} ms of the sandbox's CPU a post"
    )


if __name__ == "__main__":
    main()
