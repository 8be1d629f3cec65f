"""A setting takes effect, or `open()` refuses it (docs/operations.md, Settings):
nothing is accepted and ignored."""

from __future__ import annotations

import os
import threading

import polars as pl
import pytest

import laminar_polars as lp

# -- workers ---------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, -1, 2.5, True])
def test_workers_must_be_a_positive_int(workers):
    with pytest.raises(lp.ConfigError, match="workers: expected an int >= 1"):
        lp.open(lp.Config(workers=workers))


def test_workers_take_effect():
    """Config.workers used to be read by nothing: now keyed operators run as
    that many copies, on that many threads."""
    with lp.open(lp.Config(workers=3)) as db:
        db.execute("CREATE SOURCE t (k BIGINT, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts);"
                   "CREATE MATERIALIZED VIEW n AS SELECT k, count(*) AS n FROM t GROUP BY k")
        [node] = db.runtime.views["n"].nodes
        assert len(node.operator.shards) == 3
        db.start()
        db.source("t").push_batch([(k % 7, k) for k in range(1000)])
    assert db.query("SELECT sum(n) AS n FROM n")["n"].item() == 1000


# -- core_affinity ---------------------------------------------------------------------

def _scheduler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "laminar-scheduler"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_core_affinity_pins_the_scheduler_thread():
    cpus = os.sched_getaffinity(0)
    cpu = 0 if 0 in cpus else min(cpus)
    before = _scheduler_threads()
    with lp.open(lp.Config(core_affinity=cpu)) as db:
        db.execute("CREATE SOURCE s (x BIGINT)")
        db.start()
        [thread] = _scheduler_threads() - before
        assert os.sched_getaffinity(thread.native_id) == {cpu}
        assert os.sched_getaffinity(0) == cpus  # only the engine's thread is pinned


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_core_affinity_the_machine_lacks_is_refused():
    cpus = sorted(os.sched_getaffinity(0))
    missing = max(cpus) + 1000
    with pytest.raises(lp.ConfigError) as info:
        lp.open(lp.Config(core_affinity=missing))
    message = str(info.value)
    assert f"core_affinity: CPU {missing} is not available" in message
    assert f"available CPUs: {', '.join(map(str, cpus))}" in message


@pytest.mark.parametrize("value", [-1, True, 1.0, "0"])
def test_core_affinity_must_be_a_cpu_index(value):
    with pytest.raises(lp.ConfigError, match="core_affinity: expected a CPU index"):
        lp.open(lp.Config(core_affinity=value))


def test_core_affinity_without_sched_setaffinity_is_refused(monkeypatch):
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(lp.ConfigError, match="core_affinity is not supported on this platform"):
        lp.open(lp.Config(core_affinity=0))
    lp.open(lp.Config()).stop()  # without the setting, nothing needs it


# -- data_dir and durability ------------------------------------------------------------

def test_data_dir_is_created_with_its_parents(tmp_path):
    data_dir = tmp_path / "a" / "b" / "state"
    db = lp.open(lp.Config(data_dir=data_dir))
    assert data_dir.is_dir()
    db.stop()
    lp.open(lp.Config(data_dir=str(data_dir))).stop()  # an existing one is fine


def test_data_dir_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for data_dir in (blocker / "state", blocker):
        with pytest.raises(lp.ConfigError, match="data_dir") as info:
            lp.open(lp.Config(data_dir=data_dir))
        assert str(data_dir) in str(info.value)
        assert "cannot be created" in str(info.value) or "not a directory" in str(info.value)
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize(
    "options",
    ["checkpoint_interval = '10 seconds'", "wal_mode = 'sync'",
     "checkpoint_interval = '1s', wal_mode = 'async'"],
)
def test_per_source_durability_needs_a_data_dir(db, options):
    with pytest.raises(lp.ConfigError) as info:
        db.execute(f"CREATE SOURCE s (x BIGINT) WITH ({options})")
    message = str(info.value)
    assert "source 's'" in message and "needs the database's data_dir" in message
    assert db.execute("SHOW SOURCES").height == 0
    with pytest.raises(lp.ConfigError, match="needs the database's data_dir"):
        db.create_source("s", {"x": pl.Int64},
                         config=lp.SourceConfig(wal_mode="sync"))


def test_per_source_durability_takes_effect_with_a_data_dir(tmp_path):
    """A source's own wal_mode makes its pushes logged (and, sync, durable on return)."""
    db = lp.open(lp.Config(data_dir=tmp_path))
    db.execute("CREATE SOURCE s (x BIGINT) WITH (checkpoint_interval = '10 seconds', "
               "wal_mode = 'sync')")
    assert type(db.source("s")).__name__ == "SyncSource"
    db.start()
    db.source("s").push((1,))
    assert db.metrics()["durability"]["fsyncs"] >= 1
    db.stop()
