"""Hypothesis over the arrival of two sources: any order of each source's rows
(rows behind their source's watermark are late), any interleaving of the two,
any delays, ties in event time, keys on one side only; every join view must
equal Polars in batch on the rows each source kept."""

from __future__ import annotations

import test_oracle_joins as joins
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from join_oracle import Streams, run
from oracle import MS, at


@st.composite
def arrivals(draw) -> tuple[Streams, int]:
    times = st.integers(0, 400).map(lambda ms: ms * MS)  # whole ms: ties are common
    events = {}
    for name, symbols in (("trades", ("AAPL", "MSFT", "GOOG")),
                          ("quotes", ("AAPL", "MSFT", "TSLA"))):
        rows = draw(st.lists(st.tuples(st.sampled_from(symbols), times,
                                       st.sampled_from([None, 99.5, 100.0, 101.25]),
                                       st.sampled_from([None, 1, 2, 3])),
                             max_size=30))
        events[name] = [(symbol, price, qty, at(ts)) for symbol, ts, price, qty in rows]
    interleaving = draw(st.lists(st.booleans(), min_size=len(events["trades"]) + len(
        events["quotes"]), max_size=len(events["trades"]) + len(events["quotes"])))
    order, left = [], {"trades": len(events["trades"]), "quotes": len(events["quotes"])}
    for trade_first in interleaving:
        name = "trades" if (trade_first and left["trades"]) or not left["quotes"] else "quotes"
        order.append(name)
        left[name] -= 1
    delays = draw(st.tuples(st.sampled_from([0, 20 * MS, 100 * MS]),
                            st.sampled_from([0, 20 * MS, 100 * MS])))
    streams = Streams(events["trades"], events["quotes"], order, *delays)
    return streams, draw(st.integers(0, 3))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=arrivals(), workers=st.sampled_from([1, 2]),
       mode=st.sampled_from(["row", "batch", "arrow", "mixed"]))
def test_any_arrival_of_two_sources(case, workers, mode):
    streams, seed = case
    db = joins._open(workers, (streams.trades_delay_us, streams.quotes_delay_us))
    got = run(db, streams, mode, seed, [*joins.SQL_NAMES, *joins.LAZY_VIEWS])
    joins.check(streams, got)
