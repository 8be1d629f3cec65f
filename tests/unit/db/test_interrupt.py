"""Ctrl-C wakes blocking calls: a real SIGINT, sent to a child process blocked in one.

Polars installs its own SIGINT handler at import, after which an untimed wait on
a lock is not woken by Ctrl-C (FIELD-NOTES.md); blocking reads and `stop()`
wait in slices instead. Each test runs a small script in a child process, as a
plain script and "Jupyter-like" (through IPython's ``InteractiveShell.run_cell``),
sends it SIGINT once it is blocked, and checks it caught `KeyboardInterrupt`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import laminar_polars as lp

DEADLINE = 30.0  # seconds; only reached if something hangs
PACKAGE_ROOT = str(Path(lp.__file__).resolve().parent.parent)

_CHILD = """
import sys, textwrap
body = "try:\\n" + textwrap.indent({code!r}, "    ") + (
    "\\nexcept KeyboardInterrupt:\\n    print('caught KeyboardInterrupt', flush=True)\\n")
if {jupyter!r}:
    from IPython.core.interactiveshell import InteractiveShell
    result = InteractiveShell.instance().run_cell(body)
    print("cell succeeded" if result.success else f"cell failed: {{result.error_in_exec!r}}",
          flush=True)
else:
    exec(compile(body, "<interrupted>", "exec"), {{"__name__": "__main__"}})
print("exited", flush=True)
"""


def run_interrupted(code: str, jupyter: bool = False) -> str:
    """Run ``code`` in a child Python, send it SIGINT once it printed ``ready``,
    and return everything it printed (stdout and stderr) once it exited.

    ``code`` runs inside ``try: ... except KeyboardInterrupt: print('caught
    KeyboardInterrupt')``, followed by ``print('exited')``; with ``jupyter`` it
    runs as a cell of IPython's ``InteractiveShell``. It must print ``ready``
    (flushed) just before the call that blocks; the signal follows half a
    second later, so that the call has begun to wait. Raises AssertionError
    if the child does not print ``ready`` or does not exit within the
    deadline after the signal (it is then killed).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as ipython_dir:
        env["IPYTHONDIR"] = ipython_dir  # IPython's profile and history, not the user's
        script = _CHILD.format(code=textwrap.dedent(code), jupyter=jupyter)
        with subprocess.Popen(
            [sys.executable, "-u", "-c", script], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, cwd=PACKAGE_ROOT,
        ) as child:
            return _interrupt_when_ready(child)


def _interrupt_when_ready(child: subprocess.Popen, settle: float = 0.5) -> str:
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if line.strip() == "ready":
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(DEADLINE):
            raise AssertionError("the child never printed 'ready'")
        time.sleep(settle)  # not a measurement: lets the child reach its wait
        child.send_signal(signal.SIGINT)
        child.wait(DEADLINE)
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        child.kill()
        child.wait()
        reader.join(DEADLINE)
        what = (f"the child did not exit within {DEADLINE} s of SIGINT"
                if isinstance(exc, subprocess.TimeoutExpired) else str(exc))
        raise AssertionError(f"{what}; its output:\n{''.join(lines)}") from None
    reader.join(DEADLINE)
    return "".join(lines)


OPEN = """
import laminar_polars as lp
db = lp.open()
db.execute("CREATE SOURCE q (i BIGINT)")
sub = db.sink("q").subscribe()
db.start()
"""

BLOCKING = {
    "recv": OPEN + """
print("ready", flush=True)
sub.recv()
""",
    "iteration": OPEN + """
print("ready", flush=True)
for frame in sub:
    print("got a frame", flush=True)
""",
    "arrow_stream": OPEN + """
import pyarrow as pa
reader = pa.RecordBatchReader.from_stream(sub)
print("ready", flush=True)
try:
    reader.read_all()
except pa.ArrowException as exc:  # the interrupt crossed the Arrow C stream
    if "KeyboardInterrupt" not in str(exc):
        raise
    raise KeyboardInterrupt from exc
""",
    # The engine thread is held up inside a sink (a stand-in for a long
    # micro-batch), so stop() waits for it to drain.
    "stop": OPEN + """
import threading, time
inside = threading.Event()
sink = db.sink("q")
def slow_emit(frame):
    inside.set()
    time.sleep(3600)
sink.emit = slow_emit
db.source("q").push((1,))
assert inside.wait(30)
print("ready", flush=True)
db.stop()
""",
}


@pytest.mark.parametrize(
    ("blocking", "jupyter"),
    [("recv", False), ("iteration", False), ("arrow_stream", False), ("stop", False),
     ("recv", True), ("iteration", True)],
)
def test_ctrl_c_wakes_a_blocking_call(blocking, jupyter):
    output = run_interrupted(BLOCKING[blocking], jupyter=jupyter)
    assert "caught KeyboardInterrupt" in output, output
    assert "exited" in output, output
    if jupyter:
        assert "cell succeeded" in output, output


# A push blocked on a full ring: filled before start(), so nothing will drain
# it (pushing more than buffer_size rows before start() waits like this).
FULL_RING = """
import laminar_polars as lp
import pyarrow as pa
db = lp.open()
db.execute("CREATE SOURCE q (i BIGINT) WITH (buffer_size = 4, wait_strategy = '{wait}')")
src = db.source("q")
src.push_batch([(i,) for i in range(4)])
print("ready", flush=True)
try:
    {call}
finally:
    print("pending=%d" % src.pending, flush=True)
"""

PUSHES = {
    "push": "src.push((9,))",
    "push_batch": "src.push_batch([(9,), (10,)])",
    "push_arrow": "src.push_arrow(pa.table({'i': [9, 10]}))",
}


@pytest.mark.parametrize("wait", ["spin", "spin_yield", "park"])
@pytest.mark.parametrize("call", sorted(PUSHES))
def test_ctrl_c_wakes_a_push_waiting_for_room(call, wait):
    output = run_interrupted(FULL_RING.format(wait=wait, call=PUSHES[call]))
    assert "caught KeyboardInterrupt" in output, output
    assert "pending=4" in output, output  # the interrupted call enqueued nothing


@pytest.mark.parametrize("call", sorted(PUSHES))
def test_ctrl_c_wakes_a_push_waiting_for_room_in_a_notebook_cell(call):
    output = run_interrupted(FULL_RING.format(wait="park", call=PUSHES[call]), jupyter=True)
    assert "caught KeyboardInterrupt" in output and "pending=4" in output, output
    assert "cell succeeded" in output, output
