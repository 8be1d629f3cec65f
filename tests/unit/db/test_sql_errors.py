"""A statement with a token where none fits names that token, where it is, and the
keyword a misspelled word next to it most likely meant."""

from __future__ import annotations

import pytest

import laminar_polars as lp

MV = "CREATE MATERIALIZED VIEW v AS "


@pytest.fixture
def trades(db):
    db.execute("CREATE SOURCE t (s VARCHAR, x BIGINT, ts TIMESTAMP, "
               "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)")
    return db


@pytest.mark.parametrize(
    ("sql", "message", "column"),
    [
        ("SELECT s FORM t", "unexpected 't' after 'FORM'; did you mean FROM?", 15),
        ("SELECT s FRM t", "unexpected 't' after 'FRM'; did you mean FROM?", 14),
        ("SELECT s FROM t WHER x > 1", "unexpected 'x' after 'WHER'; did you mean WHERE?", 22),
        ("SELECT s, count(*) AS n FROM t GROPU BY s",
         "unexpected 'BY' after 'GROPU'; did you mean GROUP BY?", 38),
        ("SELECT s, count(*) AS n FROM t GROUP BY s HAVIN count(*) > 1",
         "unexpected 'HAVIN' after 's'; did you mean HAVING?", 43),
        ("SELECT s FROM t x y", "unexpected 'y' after 'x'", 19),
    ],
)
def test_unexpected_token_is_named_with_a_suggestion(trades, sql, message, column):
    db = trades
    for run, text, shift in ((db.execute, sql, 0), (db.query, sql, 0),
                             (db.execute, MV + sql, len(MV))):
        with pytest.raises(lp.SqlError) as info:
            run(text)
        assert str(info.value) == f"{message} (line 1, column {column + shift})", text
        assert (info.value.line, info.value.column) == (1, column + shift)
    assert db.execute("SHOW MATERIALIZED VIEWS").height == 0


def test_a_misspelled_select(trades):
    with pytest.raises(lp.SqlError) as info:
        trades.execute("SELEC s FROM t")
    assert str(info.value) == ("unexpected 'FROM' after 's'; did you mean SELECT instead of "
                               "'SELEC'? (line 1, column 9)")
    with pytest.raises(lp.SqlError) as info:
        trades.execute(MV + "SELEC s FROM t")
    assert str(info.value) == ("unexpected 's' after 'SELEC'; did you mean SELECT? "
                               f"(line 1, column {len(MV) + 7})")


def test_no_suggestion_without_a_near_miss(trades):
    with pytest.raises(lp.SqlError) as info:
        trades.execute("SELECT s FROM t x y")
    assert "did you mean" not in str(info.value)


def test_position_on_a_later_line(trades):
    sql = "SELECT s\nFROM t\nWHER x > 1"
    with pytest.raises(lp.SqlError, match=r"unexpected 'x' after 'WHER'; did you mean WHERE\?") \
            as info:
        trades.execute(sql)
    assert (info.value.line, info.value.column) == (3, 6)


def test_the_unexpected_word_itself_may_be_the_misspelling(db):
    with pytest.raises(lp.SqlError) as info:
        db.execute("CREATE SOURCE t (x BIGINT) WIHT (buffer_size = 2)")
    assert str(info.value) == ("unexpected 'WIHT' after ')'; did you mean WITH? "
                               "(line 1, column 28)")


@pytest.mark.parametrize(
    ("sql", "suggestion"),
    [("DRP SOURCE t", "did you mean DROP instead of 'DRP'?"),
     ("SHWO SOURCES", "did you mean SHOW instead of 'SHWO'?")],
)
def test_a_misspelled_statement_word(db, sql, suggestion):
    with pytest.raises(lp.SqlError, match=suggestion):
        db.execute(sql)


def test_unsupported_statements_still_list_what_is_supported(db):
    with pytest.raises(lp.SqlError, match="unsupported syntax at 'GRANT'; supported: CREATE") \
            as info:
        db.execute("GRANT x TO y")
    assert (info.value.line, info.value.column) == (1, 1)
