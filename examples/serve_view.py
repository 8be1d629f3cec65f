"""A view served over HTTP by a small asyncio service, with the standard library only.

A synthetic trade feed runs on a thread; the `bars` view makes one-second OHLC bars.
The service reads the view's subscription with ``async for`` (without blocking the
event loop) and serves:

    GET /bars     every bar the view holds now (``db.query``), as a JSON array
    GET /latest   the newest closed bar of each symbol, as a JSON array
    GET /stream   newline-delimited JSON: every bar as it closes, until the feed ends

Run: python examples/serve_view.py [--port 8000] [--seconds 0]
then e.g. ``curl -N localhost:8000/stream`` (``--seconds 0``: until Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable

import polars as pl

import laminar_polars as lp
from laminar_polars.demo_feed import TradeFeed, symbol_names

PIPELINE = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
);
CREATE MATERIALIZED VIEW bars AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start,
       first_value(price) AS open, max(price) AS high, min(price) AS low,
       last_value(price) AS close, sum(qty) AS volume
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
EMIT ON WINDOW CLOSE;
"""


def run_feed(db: lp.LaminarDB, seconds: float, stop: threading.Event, *,
             rate: int = 1000, speed: float = 5.0) -> None:
    """Push trades (``rate`` per second of event time, ``speed`` times faster than the
    wall clock) until ``seconds`` have passed (0: until ``stop``), then stop the
    database: its input ends, the last bars close, the subscriptions end."""
    feed = TradeFeed(symbol_names(3), seed=5, rate=rate)
    source = db.source("trades")
    start, step = time.monotonic(), 0.02  # push every 20 ms of wall time
    pushed = 0
    while not stop.is_set() and (not seconds or time.monotonic() - start < seconds):
        due = int((time.monotonic() - start + step) * rate * speed)
        source.push_arrow(feed.take(due - pushed).to_arrow())
        pushed = due
        stop.wait(step)
    db.stop()


class BarService:
    """The HTTP side: one task follows the subscription, each client has a queue."""

    def __init__(self, db: lp.LaminarDB) -> None:
        self.db = db
        self.latest = pl.DataFrame()
        self.clients: set[asyncio.Queue[pl.DataFrame | None]] = set()

    async def follow(self, subscription: lp.Subscription) -> None:
        """Read every closed bar as it comes, until the database stops."""
        async for frame in subscription:
            self.latest = pl.concat([self.latest, frame]).unique("symbol", keep="last",
                                                                  maintain_order=True)
            for queue in self.clients:
                queue.put_nowait(frame)
        for queue in self.clients:
            queue.put_nowait(None)  # the stream has ended

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()).strip():  # the headers: not needed here
                pass
            path = request[1] if len(request) >= 2 and request[0] == "GET" else ""
            if path == "/bars":
                frame = self.db.query("SELECT * FROM bars ORDER BY window_start, symbol")
                await self.respond(writer, "200 OK", frame.write_json())
            elif path == "/latest":
                await self.respond(writer, "200 OK", self.latest.write_json())
            elif path == "/stream":
                await self.stream(writer)
            else:
                await self.respond(writer, "404 Not Found", '{"error": "no such path"}')
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()

    async def respond(self, writer: asyncio.StreamWriter, status: str, body: str) -> None:
        data = body.encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[pl.DataFrame | None] = asyncio.Queue()
        self.clients.add(queue)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                         b"Connection: close\r\n\r\n")
            while (frame := await queue.get()) is not None:
                writer.write(frame.write_ndjson().encode())
                await writer.drain()
        finally:
            self.clients.discard(queue)


async def serve(port: int = 8000, seconds: float = 0.0,
                ready: Callable[[int], None] | None = None) -> None:
    """Serve on 127.0.0.1:``port`` (0: any free port, passed to ``ready``) until
    the feed ends after ``seconds`` (0: until interrupted)."""
    db = lp.open()
    db.execute(PIPELINE)
    subscription = db.sink("bars").subscribe()
    db.start()
    service = BarService(db)
    stop = threading.Event()
    feeder = threading.Thread(target=run_feed, args=(db, seconds, stop), daemon=True)
    server = await asyncio.start_server(service.handle, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    print(f"serving on http://127.0.0.1:{port}/ (GET /bars, /latest, /stream)")
    if ready is not None:
        ready(port)
    feeder.start()
    try:
        await service.follow(subscription)  # until the feed ends and the database stops
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
        feeder.join()
    print(f"done: {db.query('SELECT count(*) AS n FROM bars').item()} bars served")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop after this many seconds (default 0: until Ctrl-C)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.seconds))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
