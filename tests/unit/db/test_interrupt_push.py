"""A push blocked on a full ring wakes on Ctrl-C, for every wait strategy.

Each case runs in a child process that fills a ring before ``start()`` (so
nothing will ever drain it), prints ``ready`` and blocks in a push; the test
sends it a real SIGINT. Polars installs its own SIGINT handler, which does not
interrupt a wait: the ring waits in slices and checks for signals between them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

DEADLINE = 60.0

SETUP = """
import laminar_polars as lp
import pyarrow as pa
db = lp.open()
db.execute("CREATE SOURCE q (i BIGINT) WITH (buffer_size = 4, wait_strategy = '{wait}')")
src = db.source("q")
src.push_batch([(i,) for i in range(4)])
print("ready", flush=True)
"""

BLOCKING = {
    "push": "src.push((9,))",
    "push_batch": "src.push_batch([(9,), (10,)])",
    "push_arrow": "src.push_arrow(pa.table({'i': [9, 10]}))",
}

PLAIN = """
try:
    {call}
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted pending=%d" % src.pending, flush=True)
"""

# As in a notebook: the cell does not catch Ctrl-C, IPython does.
JUPYTER = """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_cell({setup!r})
result = shell.run_cell({call!r})
print("cell error:", type(result.error_in_exec).__name__, flush=True)
print("pending=%d" % shell.user_ns["src"].pending, flush=True)
"""


def run_interrupted(code: str) -> str:
    """Run ``code`` in a child Python; once it prints ``ready``, send SIGINT.
    Returns everything it printed; fails if it does not exit in time."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"the child never got ready:\n{''.join(lines)}")
        time.sleep(0.3)  # into the wait (a wait that returned would print 'returned')
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
        pytest.fail(f"the blocked call did not wake on SIGINT:\n{''.join(lines)}{out}")
    return "".join(lines) + out


@pytest.mark.skipif(os.name != "posix", reason="sends a real SIGINT")
@pytest.mark.parametrize("wait", ["spin", "spin_yield", "park"])
@pytest.mark.parametrize("call", sorted(BLOCKING))
def test_a_blocked_push_wakes_on_ctrl_c(wait, call):
    setup = SETUP.format(wait=wait)
    out = run_interrupted(textwrap.dedent(setup + PLAIN.format(call=BLOCKING[call])))
    assert "interrupted pending=4" in out, out  # the interrupted call enqueued nothing


@pytest.mark.skipif(os.name != "posix", reason="sends a real SIGINT")
@pytest.mark.parametrize("call", sorted(BLOCKING))
def test_a_blocked_push_in_a_notebook_cell_wakes_on_ctrl_c(call):
    code = JUPYTER.format(setup=SETUP.format(wait="park"), call=BLOCKING[call])
    out = run_interrupted(code)
    assert "cell error: KeyboardInterrupt" in out and "pending=4" in out, out
