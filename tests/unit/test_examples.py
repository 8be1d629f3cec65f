"""Every script in examples/ runs, so none can rot: each checks its own results
(against Polars in batch where it computes something), and exits 0."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

import laminar_polars as lp

REPO = pathlib.Path(lp.__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                            text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout


def load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "asof.py", "quickstart.py", "serve_view.py", "sessions.py", "vwap.py"]


def test_quickstart():
    assert "LATE" not in run_script("quickstart.py").split("shape")[-1]


@pytest.mark.parametrize(("name", "args", "last_line"), [
    ("vwap.py", ["20000"], "20,000 trades, "),
    ("sessions.py", ["40"], "the visits equal Polars sessionizing the same clicks in batch"),
    ("asof.py", ["20000"], "19,985 trades priced, "),
])
def test_example_checks_itself_against_polars(name, args, last_line):
    assert run_script(name, *args).splitlines()[-1].startswith(last_line)


async def http_get(port: int, path: str) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()  # the server closes the connection at the end
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode().splitlines()[0], body


def test_serve_view_streams_and_answers(capsys):
    serve_view = load("serve_view")

    async def scenario() -> None:
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve_view.serve(0, 1.5, ready=started.set_result))
        port = await started
        stream = asyncio.create_task(http_get(port, "/stream"))
        status, body = await http_get(port, "/nope")
        assert status == "HTTP/1.1 404 Not Found"
        status, body = await stream  # every bar closed while connected, until the feed ends
        assert status == "HTTP/1.1 200 OK"
        streamed = [json.loads(line) for line in body.decode().splitlines()]
        assert streamed and set(streamed[0]) == {"symbol", "window_start", "open", "high",
                                                  "low", "close", "volume"}
        await server
        assert {bar["symbol"] for bar in streamed} == {"AAPL", "MSFT", "NVDA"}

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 120)

    asyncio.run(bounded())
    out = capsys.readouterr().out
    assert out.startswith("serving on http://127.0.0.1:") and "bars served" in out


def test_serve_view_answers_queries_while_running():
    serve_view = load("serve_view")

    async def scenario() -> None:
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve_view.serve(0, 3.0, ready=started.set_result))
        port = await started
        latest: list = []
        while not latest:  # until the first bars have closed
            status, body = await http_get(port, "/latest")
            assert status == "HTTP/1.1 200 OK"
            latest = json.loads(body)
            await asyncio.sleep(0.05)
        status, body = await http_get(port, "/bars")
        bars = json.loads(body)
        assert status == "HTTP/1.1 200 OK" and len(bars) >= len(latest)
        newest = {(b["symbol"], b["window_start"]) for b in latest}
        assert newest <= {(b["symbol"], b["window_start"]) for b in bars}
        await server

    asyncio.run(asyncio.wait_for(scenario(), 120))
