# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython boundary of the ring core: Python rows in, Arrow capsules out.

The C core (lp_ring.c, lp_columns.c) knows nothing of Python. This module
converts a row's Python values into staged C values (no Python object kept, no
allocation), hands them to the ring, and exports taken rows as Arrow C Data
Interface capsules. Waiting (a full ring, an idle consumer) happens here with
the GIL released, so the other side can run.

It knows nothing of SQL or Polars: the package above passes names, type codes
and settings as plain values.
"""

import sys
from collections import deque

import numpy as np

from cpython.datetime cimport (
    PyDateTime_Check,
    PyDateTime_CheckExact,
    PyDate_Check,
    PyDate_CheckExact,
    datetime_day,
    datetime_hour,
    datetime_microsecond,
    datetime_minute,
    datetime_month,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    date_day,
    date_month,
    date_year,
    import_datetime,
)
from cpython.dict cimport PyDict_GetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Clear
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

cdef extern from "Python.h":
    # Declared without an exception clause: the hot path checks for NULL itself
    # (a lone surrogate) and raises a SchemaError naming the column instead.
    const char* utf8_or_null "PyUnicode_AsUTF8AndSize"(object value, Py_ssize_t* size)
from libc.stdint cimport (
    INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int64_t, uint32_t,
)
from libc.stdlib cimport free, malloc

import_datetime()

cdef extern from "nanoarrow/nanoarrow.h":
    struct ArrowSchema:
        void (*release)(ArrowSchema*)
    struct ArrowArray:
        int64_t length
        void (*release)(ArrowArray*)
    struct ArrowError:
        char message[1024]
    int ArrowSchemaDeepCopy(const ArrowSchema* schema, ArrowSchema* out)
    void ArrowArrayMove(ArrowArray* src, ArrowArray* dst)
    void ArrowSchemaMove(ArrowSchema* src, ArrowSchema* dst)

cdef extern from "lp_crc32c.h":
    uint32_t lp_crc32c(uint32_t crc, const unsigned char* data, size_t len) nogil

cdef extern from "lp_atomic.h":
    int64_t lp_fetch_add(int64_t* p, int64_t v) nogil
    int64_t lp_load_acquire(const int64_t* p) nogil
    void lp_store_release(int64_t* p, int64_t v) nogil

cdef extern from "lp_ring.h":
    enum:
        LP_STRING, LP_FLOAT64, LP_FLOAT32, LP_INT64, LP_INT32, LP_INT16, LP_BOOL,
        LP_TIMESTAMP, LP_DATE
        LP_BLOCK, LP_DROP_OLDEST, LP_REJECT
        LP_WAIT_SPIN, LP_WAIT_SPIN_YIELD, LP_WAIT_PARK
        LP_PUSH_OK, LP_PUSH_LATE, LP_PUSH_FULL, LP_PUSH_CLOSED, LP_PUSH_TOO_BIG
    int64_t LP_NO_WATERMARK
    int64_t LP_CLOSED_WATERMARK
    ctypedef struct lp_value:
        int64_t i
        double f
        const char* str
        int64_t len
        int is_null
    ctypedef struct lp_wait_strategy:
        int kind
        int64_t spins
    ctypedef struct lp_doorbell:
        int64_t rung
    ctypedef struct lp_ring:
        int64_t claim
        int64_t published
        int64_t read
        int64_t dropped
        int64_t late
        int64_t rejected
        int64_t multi_producer
        int64_t closed
        int64_t batch_rows
        int64_t batches_queued
        int64_t batch_head
        int64_t capacity
        int64_t arena_size
        int64_t watermark_delay
        int watermark_column
        int backpressure
        int ncolumns
        ArrowSchema schema
    ctypedef int (*lp_space_predicate)(const lp_ring* ring, int64_t arg) noexcept nogil
    int lp_ring_init(lp_ring* ring, int64_t capacity, int64_t arena_size, int ncolumns,
                     const int* types, ArrowSchema* schema, int watermark_column,
                     int64_t watermark_delay, int backpressure, lp_wait_strategy wait,
                     lp_doorbell* doorbell)
    void lp_ring_destroy(lp_ring* ring)
    void lp_ring_set_multi_producer(lp_ring* ring)
    int lp_ring_push(lp_ring* ring, const lp_value* values)
    int lp_ring_wait_for_row(lp_ring* ring, const lp_value* values, int64_t timeout_us) nogil
    int lp_ring_wait_for_space(lp_ring* ring, lp_space_predicate has_space, int64_t arg,
                               int64_t timeout_us) nogil
    int lp_ring_batch_fits(const lp_ring* ring, int64_t rows) noexcept nogil
    int lp_schema_init(ArrowSchema* schema, int ncolumns, const char** names,
                       const int* types, const int* nullable)
    int64_t lp_ring_take(lp_ring* ring, int64_t max_rows, ArrowArray* out, ArrowError* error)
    int lp_rows_to_array(const lp_ring* ring, const lp_value* values, int64_t nrows,
                         ArrowArray* out, ArrowError* error)
    int64_t lp_ring_watermark(const lp_ring* ring)
    void lp_ring_advance_watermark(lp_ring* ring, int64_t event_time)
    void lp_ring_advance_event_time(lp_ring* ring, int64_t event_time)
    int64_t lp_ring_pending(const lp_ring* ring)
    int lp_ring_row_fits(const lp_ring* ring)
    int64_t lp_ring_drop_oldest(lp_ring* ring, int64_t max_rows)
    void lp_ring_close(lp_ring* ring)
    void lp_ring_mark_closed(lp_ring* ring)
    void lp_ring_seal(lp_ring* ring)
    void lp_ring_wake_producers(lp_ring* ring)
    void lp_doorbell_init(lp_doorbell* bell)
    void lp_doorbell_destroy(lp_doorbell* bell)
    void lp_doorbell_ring(lp_doorbell* bell)
    int lp_doorbell_wait(lp_doorbell* bell, lp_ring** rings, int nrings, int64_t seen,
                         lp_wait_strategy wait, int64_t timeout_us) nogil

# Type codes shared with laminar_polars.catalog.ColumnType (same values).
TYPE_NAMES = ("VARCHAR", "DOUBLE", "REAL", "BIGINT", "INTEGER", "SMALLINT", "BOOLEAN",
              "TIMESTAMP", "DATE")
NO_WATERMARK = LP_NO_WATERMARK
CLOSED_WATERMARK = LP_CLOSED_WATERMARK

# Rows wider than this stage their values on the heap instead of the C stack.
DEF STACK_COLUMNS = 64
# A blocked push waits in slices this long, checking for Ctrl-C between them
# (Polars' SIGINT handler does not interrupt a wait, so the check is ours).
DEF SIGNAL_CHECK_US = 50000

# TIMESTAMP and DATE values are limited to what Python's datetime and date
# hold (years 1 to 9999), so every value reads back; Polars would accept more
# and then fail (or panic) converting it.
MIN_TIMESTAMP_US = -62135596800000000    # 0001-01-01 00:00:00
MAX_TIMESTAMP_US = 253402300799999999    # 9999-12-31 23:59:59.999999
MIN_DATE_DAYS = -719162                  # 0001-01-01
MAX_DATE_DAYS = 2932896                  # 9999-12-31
cdef int64_t C_MIN_TIMESTAMP_US = MIN_TIMESTAMP_US
cdef int64_t C_MAX_TIMESTAMP_US = MAX_TIMESTAMP_US
TIMESTAMP_RANGE = "0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999"

# Errors are raised as the classes the package registers (set_errors), so this
# module needs no import from the package above it.
cdef object SchemaError = TypeError
cdef object FullError = RuntimeError
cdef object ClosedError = RuntimeError


def crc32c(data, unsigned int crc=0):
    """The CRC-32C of a bytes-like object (continuing from ``crc``), computed
    with the GIL released: the checksum of WAL records and checkpoint files."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    cdef uint32_t out
    with nogil:
        out = lp_crc32c(crc, &view[0] if view.shape[0] else NULL, view.shape[0])
    return out


def set_errors(schema_error, full, closed):
    """Install the exception classes raised for bad rows, a full ring, a closed one."""
    global SchemaError, FullError, ClosedError
    SchemaError, FullError, ClosedError = schema_error, full, closed


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar.
    y -= m <= 2
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int64_t datetime_to_micros(object value) except? -1:
    cdef int64_t days = days_from_civil(datetime_year(value), datetime_month(value),
                                        datetime_day(value))
    cdef int64_t micros = (
        ((days * 24 + datetime_hour(value)) * 60 + datetime_minute(value)) * 60
        + datetime_second(value)) * 1000000 + datetime_microsecond(value)
    if datetime_tzinfo(value) is not None:
        # Aware datetimes are stored in UTC; naive ones as given (Polars' rule).
        offset = value.utcoffset()
        if offset is not None:
            micros -= (offset.days * 86400 + offset.seconds) * 1000000 + offset.microseconds
    return micros


cdef int64_t scan_late(const int64_t[::1] event_times, int64_t watermark, int64_t delay,
                       unsigned char[::1] keep, int64_t* running) noexcept nogil:
    """Judge a batch's rows in arrival order: row i is late if it is older than
    max(watermark, max(event_times[:i]) - delay). Marks the rows kept in
    ``keep`` (1) and returns how many are late; ``running`` gets the latest
    kept time (INT64_MIN if none). One pass in C, no allocation: numpy's
    accumulate is not vectorised and costs ~3 ns a row."""
    cdef Py_ssize_t i, n = event_times.shape[0]
    cdef int64_t late = 0, bound = watermark, t
    running[0] = INT64_MIN
    for i in range(n):
        t = event_times[i]
        if t < bound:
            keep[i] = 0
            late += 1
            continue
        keep[i] = 1
        if t > running[0]:
            running[0] = t
            if t - delay > bound:
                bound = t - delay
    return late


cdef bint is_missing(object value):
    """pandas' and numpy's markers of a missing value: NaT, pd.NA, datetime64 NaT."""
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NaT or value is pandas.NA)


# datetime64 units as microseconds (coarser) or per microsecond (finer).
_DATETIME64_MICROS = {"W": 604_800_000_000, "D": 86_400_000_000, "h": 3_600_000_000,
                      "m": 60_000_000, "s": 1_000_000, "ms": 1_000, "us": 1}
_DATETIME64_PER_MICRO = {"ns": 1_000, "ps": 1_000_000, "fs": 1_000_000_000,
                         "as": 1_000_000_000_000}


def datetime64_micros(value):
    """A numpy datetime64 as int microseconds, floored (sub-microsecond parts
    are dropped toward the past, as a datetime drops a Timestamp's nanoseconds)."""
    unit, count = np.datetime_data(value.dtype)
    if unit in ("Y", "M"):
        value = value.astype("datetime64[D]")
        unit, count = "D", 1
    ticks = int(value.astype(np.int64)) * count
    if unit in _DATETIME64_MICROS:
        return ticks * _DATETIME64_MICROS[unit]
    return ticks // _DATETIME64_PER_MICRO[unit]


cdef class Doorbell:
    """Wakes the engine when any ring of the database has rows or news."""

    cdef lp_doorbell bell

    def __cinit__(self):
        lp_doorbell_init(&self.bell)

    def __dealloc__(self):
        lp_doorbell_destroy(&self.bell)

    @property
    def rung(self):
        return lp_load_acquire(&self.bell.rung)

    def ring(self):
        lp_doorbell_ring(&self.bell)

    def wait(self, list rings, int64_t seen, timeout=None, str kind="park", int64_t spins=0):
        """Block (GIL released) until a ring has rows, `ring()` was called
        since `seen`, or `timeout` seconds pass. Returns False on timeout."""
        cdef int n = len(rings)
        cdef lp_ring** ptrs = <lp_ring**>malloc(max(n, 1) * sizeof(lp_ring*))
        cdef lp_wait_strategy strategy
        strategy.kind = _wait_kind(kind)
        strategy.spins = spins
        cdef int64_t timeout_us = -1 if timeout is None else <int64_t>(timeout * 1e6)
        cdef int ready
        for i in range(n):
            ptrs[i] = &(<Ring>rings[i]).ring
        with nogil:
            ready = lp_doorbell_wait(&self.bell, ptrs, n, seen, strategy, timeout_us)
        free(ptrs)
        return bool(ready)


cdef int _wait_kind(str kind) except -1:
    if kind == "spin":
        return LP_WAIT_SPIN
    if kind == "spin_yield":
        return LP_WAIT_SPIN_YIELD
    if kind == "park":
        return LP_WAIT_PARK
    raise ValueError(f"unknown wait strategy {kind!r}")


cdef int _backpressure(str kind) except -1:
    if kind == "block":
        return LP_BLOCK
    if kind == "drop_oldest":
        return LP_DROP_OLDEST
    if kind == "reject":
        return LP_REJECT
    raise ValueError(f"unknown backpressure {kind!r}")


cdef void _release_schema_capsule(object capsule) noexcept:
    cdef ArrowSchema* schema = <ArrowSchema*>PyCapsule_GetPointer(capsule, "arrow_schema")
    if schema.release != NULL:
        schema.release(schema)
    free(schema)


cdef void _release_array_capsule(object capsule) noexcept:
    cdef ArrowArray* array = <ArrowArray*>PyCapsule_GetPointer(capsule, "arrow_array")
    if array.release != NULL:
        array.release(array)
    free(array)


cdef class ArrowChunk:
    """Rows taken from a ring: one Arrow struct array, exported once through
    ``__arrow_c_array__`` (``pl.DataFrame(chunk)`` imports it without copying
    fixed-width columns)."""

    cdef ArrowArray array
    cdef ArrowSchema schema
    cdef readonly int64_t first_sequence

    def __dealloc__(self):
        if self.array.release != NULL:
            self.array.release(&self.array)
        if self.schema.release != NULL:
            self.schema.release(&self.schema)

    def __len__(self):
        return self.array.length if self.array.release != NULL else 0

    def __arrow_c_array__(self, requested_schema=None):
        if self.array.release == NULL:
            raise ValueError("this chunk was already exported")
        cdef ArrowSchema* schema = <ArrowSchema*>malloc(sizeof(ArrowSchema))
        cdef ArrowArray* array = <ArrowArray*>malloc(sizeof(ArrowArray))
        ArrowSchemaMove(&self.schema, schema)
        ArrowArrayMove(&self.array, array)
        return (PyCapsule_New(schema, "arrow_schema", _release_schema_capsule),
                PyCapsule_New(array, "arrow_array", _release_array_capsule))


cdef class QueuedBatch:
    """A batch pushed whole (``push_arrow``'s table, or ``push_batch``'s rows as
    an `ArrowChunk`), queued after every row pushed before it.

    ``keep`` is a mask (one byte per row, 1 = keep) of the rows that were on
    time when the batch was admitted, or None when all were; the engine
    applies it, so no Arrow kernel runs on the pushing thread. ``rows`` is how
    many rows are kept (the room the batch takes); ``tag`` its place among
    the ring's rows: it comes before the row with sequence ``tag``."""

    cdef readonly object data
    cdef readonly object keep
    cdef readonly int64_t rows
    cdef readonly int64_t tag


cdef class Ring:
    """A source's ring: pre-allocated columns, sequences, and the queue of
    Arrow batches pushed whole (ordered against rows by sequence).

    Ring rows and queued batch rows share one capacity (see lp_ring.h): a full
    ring refuses, blocks or drops for rows and batches alike, whichever filled
    it. Under 'drop_oldest' the oldest pending data goes first, in push order:
    ring rows one by one, a queued batch whole; every dropped row is counted."""

    cdef lp_ring ring
    cdef bint ready
    cdef readonly tuple names
    cdef int* types
    cdef char* not_null
    cdef object batches          # deque of QueuedBatch, oldest first
    cdef int64_t handed_watermark  # the watermark the last take() handed out
    cdef readonly object doorbell
    cdef readonly int producers
    cdef int64_t batch_rows_pushed
    cdef int64_t batch_rows_consumed  # rows of batches taken or dropped
    # Why the ring was closed, for the `Closed` a push then raises: a reason
    # (text) and the exception behind it, if any (an engine failure).
    cdef readonly object close_reason
    cdef readonly object close_cause

    def __cinit__(self, names, types, not_null, int64_t capacity, int watermark_column=-1,
                  int64_t watermark_delay_us=0, str backpressure="block",
                  str wait_kind="spin_yield", int64_t spins=100, Doorbell doorbell=None,
                  int64_t arena_bytes=0):
        cdef int n = len(names)
        cdef int i
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
        self.names = tuple(names)
        self.types = <int*>malloc(n * sizeof(int))
        self.not_null = <char*>malloc(n)
        encoded = [name.encode() for name in names]
        cdef const char** cnames = <const char**>malloc(n * sizeof(char*))
        cdef int* nullable = <int*>malloc(n * sizeof(int))
        for i in range(n):
            self.types[i] = types[i]
            self.not_null[i] = bool(not_null[i])
            nullable[i] = not not_null[i]
            cnames[i] = encoded[i]
        cdef ArrowSchema schema
        rc = lp_schema_init(&schema, n, cnames, self.types, nullable)
        free(cnames)
        free(nullable)
        if rc != 0:
            raise MemoryError(f"lp_schema_init failed ({rc})")
        cdef lp_wait_strategy strategy
        strategy.kind = _wait_kind(wait_kind)
        strategy.spins = spins
        if arena_bytes <= 0:
            arena_bytes = max(capacity * 64, 1 << 16)
        arena_bytes = 1 << (arena_bytes - 1).bit_length()
        self.doorbell = doorbell
        rc = lp_ring_init(&self.ring, capacity, arena_bytes, n, self.types, &schema,
                          watermark_column, watermark_delay_us, _backpressure(backpressure),
                          strategy, &doorbell.bell if doorbell is not None else NULL)
        if rc != 0:
            lp_ring_destroy(&self.ring)
            raise MemoryError(f"cannot allocate a ring of {capacity} rows ({rc})")
        self.ready = True
        self.handed_watermark = LP_NO_WATERMARK
        self.batches = deque()
        self.producers = 0

    def __dealloc__(self):
        if self.ready:
            lp_ring_destroy(&self.ring)
        free(self.types)
        free(self.not_null)

    # -- state ------------------------------------------------------------
    @property
    def capacity(self):
        return self.ring.capacity

    @property
    def pending(self):
        return lp_ring_pending(&self.ring)

    @property
    def multi_producer(self):
        return bool(lp_load_acquire(&self.ring.multi_producer))

    @property
    def closed(self):
        """Whether pushes are refused (sealed or ended)."""
        return lp_load_acquire(&self.ring.closed) != 0

    @property
    def ended(self):
        """Whether the input ended (the watermark is +inf)."""
        return lp_ring_watermark(&self.ring) == LP_CLOSED_WATERMARK

    @property
    def watermark(self):
        """Current watermark in microseconds (NO_WATERMARK before any event)."""
        return lp_ring_watermark(&self.ring)

    @property
    def pushed(self):
        """Rows accepted so far (ring rows and queued batch rows), in push order;
        the position a journal tells a producer its rows are durable against."""
        return lp_load_acquire(&self.ring.published) + self.batch_rows_pushed

    @property
    def consumed(self):
        """Rows taken by the engine or dropped (drop_oldest), in push order."""
        return lp_load_acquire(&self.ring.read) + self.batch_rows_consumed

    def stats(self):
        return {
            "pushed": lp_load_acquire(&self.ring.published) + self.batch_rows_pushed,
            "dropped": lp_load_acquire(&self.ring.dropped),
            "late": lp_load_acquire(&self.ring.late),
            "rejected": lp_load_acquire(&self.ring.rejected),
            "pending": lp_ring_pending(&self.ring),
        }

    def add_producer(self):
        """Register one more producer handle; the second one turns on MPSC."""
        self.producers += 1
        if self.producers == 2:
            lp_ring_set_multi_producer(&self.ring)

    def advance_watermark(self, int64_t event_time):
        lp_ring_advance_watermark(&self.ring, event_time)

    def count_rejected(self, int64_t rows):
        lp_fetch_add(&self.ring.rejected, rows)

    def close(self, reason=None, cause=None):
        """End the input: the watermark becomes CLOSED_WATERMARK and pushes
        raise `Closed`, saying ``reason`` (with ``cause`` chained) if given.
        The first close's reason stays."""
        if self.close_reason is None and reason is not None:
            self.close_reason = reason
            self.close_cause = cause
        lp_ring_close(&self.ring)

    def seal(self, reason=None):
        """Refuse further pushes (`Closed`, saying ``reason``) but keep the
        watermark: what the ring holds can still be drained before the input
        ends (`close`)."""
        if self.close_reason is None and reason is not None:
            self.close_reason = reason
        lp_ring_seal(&self.ring)

    def close_in_forked_child(self, str reason):
        """`close` for the child of a ``fork()``: no thread is woken (none
        exists there, and a lock another thread held at the fork would never
        be released)."""
        if self.close_reason is None:
            self.close_reason = reason
        lp_ring_mark_closed(&self.ring)

    def closed_error(self, str what="the source is closed"):
        """The `Closed` exception a push into this closed ring raises."""
        message = what if self.close_reason is None else f"{what}: {self.close_reason}"
        error = ClosedError(message + "; no more rows are accepted")
        error.__cause__ = self.close_cause
        return error

    # -- Arrow batches ----------------------------------------------------
    cdef int wait_for_space(self, lp_space_predicate has_space, int64_t arg) except -1:
        """Wait (GIL released, the ring's wait strategy) until ``has_space``
        holds or the ring closes; LP_PUSH_OK or LP_PUSH_CLOSED. Ctrl-C raises
        KeyboardInterrupt, checked between slices of the wait."""
        cdef int rc = LP_PUSH_FULL
        while rc == LP_PUSH_FULL:
            with nogil:
                rc = lp_ring_wait_for_space(&self.ring, has_space, arg, SIGNAL_CHECK_US)
            if rc == LP_PUSH_FULL:
                PyErr_CheckSignals()
        return rc

    def enqueue_batch(self, data, int64_t rows, const int64_t[::1] event_times=None,
                      bint wait=True):
        """Queue ``data`` (``rows`` rows) after every row pushed so far, all or
        nothing. ``event_times`` are the rows' event times (int64 us, arrival
        order) when the source has a watermark column: rows older than the
        watermark are late, counted, and left out (see `QueuedBatch.keep`).

        Returns True once admitted (or when every row was late), False when
        the kept rows do not fit and must not wait ('reject', or
        ``wait=False``); nothing is enqueued or counted then. Raises Closed
        if the ring is or gets closed first, KeyboardInterrupt on Ctrl-C while
        waiting; nothing is enqueued or counted then either.

        When the rows do not fit: 'block' waits until the engine has drained
        enough; 'drop_oldest' drops the oldest pending data (ring rows, whole
        queued batches) until they fit. A batch larger than the capacity is
        admitted only into an empty ring ('block' waits for the engine to
        drain everything, 'drop_oldest' drops everything pending); 'reject'
        never admits one, so its pending rows never exceed the capacity.

        Rows are judged late against the watermark as it stands when the
        batch is admitted, not before a wait: the engine may have closed a
        window meanwhile, and a row judged earlier would reopen it."""
        if self.closed:
            raise self.closed_error()
        cdef bint judged = event_times is not None and self.ring.watermark_column >= 0
        cdef int64_t late = 0, running = LP_NO_WATERMARK, needed = rows
        cdef int64_t watermark = lp_ring_watermark(&self.ring)
        cdef int64_t delay = self.ring.watermark_delay
        keep = bytearray(rows) if judged else None
        if judged:
            late = scan_late(event_times, watermark, delay, keep, &running)
            needed = rows - late
        if needed > self.ring.capacity and self.ring.backpressure == LP_REJECT:
            return False
        cdef int rc
        while needed > 0 and not lp_ring_batch_fits(&self.ring, needed):
            if self.ring.backpressure == LP_DROP_OLDEST and self._drop_oldest(needed):
                continue
            if self.ring.backpressure == LP_REJECT or not wait:
                return False
            rc = self.wait_for_space(<lp_space_predicate>lp_ring_batch_fits, needed)
            if rc == LP_PUSH_CLOSED:
                raise self.closed_error("the source was closed while waiting for room")
        cdef QueuedBatch entry = QueuedBatch.__new__(QueuedBatch)
        # Admission: from the watermark read below to the end, nothing calls
        # into Python or allocates (the entry exists already), so no other
        # producer and not the engine run in between (both need the GIL). The
        # late judgement then holds for the watermark the engine will see
        # with these rows; a re-judgement only finds more late rows, so the
        # room checked above still suffices.
        if self.closed:
            raise self.closed_error()
        if judged and lp_ring_watermark(&self.ring) != watermark:
            late = scan_late(event_times, lp_ring_watermark(&self.ring), delay, keep, &running)
            needed = rows - late
        if late:
            lp_fetch_add(&self.ring.late, late)
        if needed == 0:
            return True
        entry.data = data
        entry.keep = keep if late else None
        entry.rows = needed
        entry.tag = lp_load_acquire(&self.ring.claim)
        lp_fetch_add(&self.ring.batch_rows, needed)
        self.batches.append(entry)
        if len(self.batches) == 1:
            lp_store_release(&self.ring.batch_head, entry.tag)
        lp_fetch_add(&self.ring.batches_queued, 1)
        self.batch_rows_pushed += needed
        if running != LP_NO_WATERMARK:
            lp_ring_advance_event_time(&self.ring, running)
        if self.doorbell is not None:
            lp_doorbell_ring(&(<Doorbell>self.doorbell).bell)
        return True

    cdef QueuedBatch _pop_batch(self):
        """Unqueue the oldest batch and give its room back."""
        cdef QueuedBatch entry = self.batches.popleft()
        self.batch_rows_consumed += entry.rows
        lp_store_release(&self.ring.batch_head,
                         (<QueuedBatch>self.batches[0]).tag if self.batches else INT64_MAX)
        lp_fetch_add(&self.ring.batch_rows, -entry.rows)
        lp_fetch_add(&self.ring.batches_queued, -1)
        lp_ring_wake_producers(&self.ring)
        return entry

    cdef bint _drop_oldest(self, int64_t need) except -1:
        """drop_oldest: drop the oldest pending data, in push order, to make
        room for `need` more rows: ring rows older than the oldest queued
        batch, else that batch whole. Counted as dropped. False if nothing
        is left to drop."""
        cdef int64_t short = lp_ring_pending(&self.ring) + need - self.ring.capacity
        if short <= 0:
            return True
        if lp_ring_drop_oldest(&self.ring, short) > 0:
            return True
        if not self.batches:
            return False
        entry = self._pop_batch()
        lp_fetch_add(&self.ring.dropped, entry.rows)
        return True

    # -- consuming ----------------------------------------------------------
    def take(self, int64_t max_rows=1 << 62):
        """Everything readable now, in push order: ``(watermark, segments,
        consumed)``, each segment an `ArrowChunk` of ring rows or a
        `QueuedBatch`; ``consumed`` is `consumed` just after the take (the end
        of the range of rows taken or dropped so far).

        The watermark is read first, so it never runs ahead of the rows taken
        with it. When ``max_rows`` leaves rows behind, the watermark handed
        out is the previous one: the rows left may be older than the one
        read (they made it), and must not arrive after it."""
        cdef int64_t watermark = lp_ring_watermark(&self.ring)
        segments = []
        cdef int64_t limit, read
        cdef ArrowChunk chunk
        cdef QueuedBatch batch
        while max_rows > 0:
            read = lp_load_acquire(&self.ring.read)
            if self.batches:
                batch = self.batches[0]
                if batch.tag <= read:
                    self._pop_batch()
                    segments.append(batch)
                    max_rows -= batch.rows
                    continue
                limit = min(batch.tag - read, max_rows)
            else:
                limit = max_rows
            chunk = self._take_rows(limit)
            if chunk is None:
                break
            segments.append(chunk)
            max_rows -= len(chunk)
        if max_rows <= 0 and lp_ring_pending(&self.ring) > 0:
            watermark = self.handed_watermark
        self.handed_watermark = watermark
        return watermark, segments, self.consumed

    cdef ArrowChunk _take_rows(self, int64_t limit):
        cdef ArrowChunk chunk = ArrowChunk.__new__(ArrowChunk)
        cdef ArrowError error
        chunk.first_sequence = lp_load_acquire(&self.ring.read)
        cdef int64_t n = lp_ring_take(&self.ring, limit, &chunk.array, &error)
        if n < 0:
            raise MemoryError(error.message.decode(errors="replace"))
        if n == 0:
            return None
        if ArrowSchemaDeepCopy(&self.ring.schema, &chunk.schema) != 0:
            raise MemoryError("copying the ring schema failed")
        return chunk

    def schema_capsule(self):
        """The ring's struct schema as an ``arrow_schema`` capsule."""
        cdef ArrowSchema* schema = <ArrowSchema*>malloc(sizeof(ArrowSchema))
        if ArrowSchemaDeepCopy(&self.ring.schema, schema) != 0:
            free(schema)
            raise MemoryError("copying the ring schema failed")
        return PyCapsule_New(schema, "arrow_schema", _release_schema_capsule)


cdef class Producer:
    """A producer handle of a ring: the hot path of ``Source.push``."""

    cdef readonly Ring ring
    cdef lp_ring* c_ring
    cdef int ncolumns

    def __cinit__(self, Ring ring, *args, **kwargs):
        self.ring = ring
        self.c_ring = &ring.ring
        self.ncolumns = ring.ring.ncolumns
        ring.add_producer()

    # -- conversion -----------------------------------------------------------
    cdef int _stage(self, int c, object value, lp_value* out) except -1:
        """Stage one value: the exact Python types inline, the rest (numpy
        scalars, subclasses, pandas' missing markers, errors) in `_stage_other`."""
        cdef int t = self.ring.types[c]
        cdef Py_ssize_t size
        out.is_null = 0
        if value is None:
            return self._stage_null(c, value, out)
        if t == LP_FLOAT64 or t == LP_FLOAT32:
            if type(value) is float:
                out.f = PyFloat_AS_DOUBLE(value)
                return 0
        elif t == LP_STRING:
            if type(value) is str:
                out.str = utf8_or_null(value, &size)
                if out.str == NULL:  # a lone surrogate: no UTF-8 for it
                    PyErr_Clear()
                    return self._bad_string(c, value)
                out.len = size
                return 0
        elif t == LP_TIMESTAMP:
            if type(value) is int:
                out.i = self._int_in_range(c, value, C_MIN_TIMESTAMP_US, C_MAX_TIMESTAMP_US)
                return 0
            if PyDateTime_CheckExact(value):
                out.i = self._timestamp_in_range(c, value, datetime_to_micros(value))
                return 0
        elif t == LP_BOOL:
            if value is True or value is False:
                out.i = value is True
                return 0
        elif t == LP_DATE:
            if PyDate_CheckExact(value):
                out.i = days_from_civil(date_year(value), date_month(value), date_day(value))
                return 0
        elif type(value) is int:
            if t == LP_INT64:
                out.i = self._int_in_range(c, value, INT64_MIN, INT64_MAX)
            elif t == LP_INT32:
                out.i = self._int_in_range(c, value, INT32_MIN, INT32_MAX)
            else:
                out.i = self._int_in_range(c, value, INT16_MIN, INT16_MAX)
            return 0
        return self._stage_other(c, value, out)

    cdef int _stage_other(self, int c, object value, lp_value* out) except -1:
        """What a Python user may pass besides the exact types, off the fast
        path: pandas' NaT / NA and numpy's NaT (null), numpy scalars wherever
        the matching Python type is accepted, subclasses (pandas Timestamp,
        str, int and date subclasses), numpy datetime64 (floored to
        microseconds)."""
        cdef int t = self.ring.types[c]
        cdef Py_ssize_t size
        if is_missing(value):
            return self._stage_null(c, value, out)
        if isinstance(value, np.datetime64):
            if t == LP_TIMESTAMP:
                out.i = self._int_in_range(c, datetime64_micros(value),
                                           C_MIN_TIMESTAMP_US, C_MAX_TIMESTAMP_US)
                return 0
            if t == LP_DATE and np.datetime_data(value.dtype)[0] in ("Y", "M", "W", "D"):
                out.i = self._int_in_range(c, datetime64_micros(value) // 86_400_000_000,
                                           MIN_DATE_DAYS, MAX_DATE_DAYS)
                return 0
            return self._bad(c, value)
        if isinstance(value, np.generic) and not isinstance(value, np.str_):
            # np.float32, np.bool_, np.int64...: as the Python scalar they stand
            # for (a copy: fine for numbers; np.str_ is a str and keeps its own)
            return self._stage(c, value.item(), out)
        if t == LP_FLOAT64 or t == LP_FLOAT32:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    out.f = float(value)
                except OverflowError:
                    raise SchemaError(
                        f"column {self.ring.names[c]!r}: {value!r} is too large for "
                        f"{TYPE_NAMES[t]}") from None
                return 0
        elif t == LP_STRING:
            if isinstance(value, str):  # a subclass (np.str_): its own UTF-8 serves
                out.str = utf8_or_null(value, &size)
                if out.str == NULL:
                    PyErr_Clear()
                    return self._bad_string(c, value)
                out.len = size
                return 0
        elif t == LP_TIMESTAMP:
            if PyDateTime_Check(value):  # e.g. a pandas Timestamp: its nanoseconds drop
                out.i = self._timestamp_in_range(c, value, datetime_to_micros(value))
                return 0
            if isinstance(value, int) and not isinstance(value, bool):
                return self._stage(c, int(value), out)
        elif t == LP_DATE:
            if PyDate_Check(value) and not PyDateTime_Check(value):
                out.i = days_from_civil(date_year(value), date_month(value), date_day(value))
                return 0
            if type(value) is int:
                out.i = self._int_in_range(c, value, MIN_DATE_DAYS, MAX_DATE_DAYS)
                return 0
        elif t != LP_BOOL:
            if hasattr(value, "__index__") and not isinstance(value, bool):
                return self._stage(c, value.__index__(), out)
        return self._bad(c, value)

    cdef int _stage_null(self, int c, object value, lp_value* out) except -1:
        if self.ring.not_null[c]:
            raise SchemaError(f"column {self.ring.names[c]!r} is NOT NULL, got {value!r}")
        out.is_null = 1
        out.len = 0
        out.i = 0
        return 0

    cdef int64_t _int_in_range(self, int c, object value, int64_t low, int64_t high) except? -1:
        cdef int overflow = 0
        cdef int64_t v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or v < low or v > high:
            self._out_of_range(c, value, low, high)
        return v

    cdef int64_t _timestamp_in_range(self, int c, object value, int64_t micros) except? -1:
        # Only an aware datetime can leave the range (its UTC time is a year off).
        if micros < C_MIN_TIMESTAMP_US or micros > C_MAX_TIMESTAMP_US:
            self._out_of_range(c, value, C_MIN_TIMESTAMP_US, C_MAX_TIMESTAMP_US)
        return micros

    cdef int _out_of_range(self, int c, object value, int64_t low, int64_t high) except -1:
        cdef int t = self.ring.types[c]
        if t == LP_TIMESTAMP:
            expected = f"{TIMESTAMP_RANGE} UTC (int microseconds {low}..{high})"
        elif t == LP_DATE:
            expected = "0001-01-01 to 9999-12-31 (int days since 1970-01-01 " \
                       f"{low}..{high})"
        else:
            expected = f"{low}..{high}"
        raise SchemaError(
            f"column {self.ring.names[c]!r}: {value!r} is out of range for "
            f"{TYPE_NAMES[t]} ({expected})")

    cdef int _bad_string(self, int c, object value) except -1:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise SchemaError(
                f"column {self.ring.names[c]!r}: {value!r} cannot be stored as UTF-8 "
                f"({error.reason} at position {error.start}); remove or replace the lone "
                f"surrogate") from None
        return self._bad(c, value)

    cdef int _bad(self, int c, object value) except -1:
        raise SchemaError(
            f"column {self.ring.names[c]!r}: expected {TYPE_NAMES[self.ring.types[c]]}, "
            f"got {value!r} ({type(value).__name__})")

    cdef int _stage_row(self, object row, lp_value* values, list held) except -1:
        """Convert a tuple, list, dict or record object; `held` keeps values
        of mutable containers alive until the row is in the ring."""
        cdef int n = self.ncolumns
        cdef int c
        cdef Py_ssize_t size
        cdef PyObject* item
        if isinstance(row, tuple):
            size = PyTuple_GET_SIZE(row)
            if size != n:
                self._arity(size)
            for c in range(n):
                self._stage(c, <object>PyTuple_GET_ITEM(row, c), &values[c])
        elif isinstance(row, dict):
            found = 0
            for c in range(n):
                item = PyDict_GetItem(row, self.ring.names[c])
                if item == NULL:
                    self._stage(c, None, &values[c])
                else:
                    found += 1
                    held.append(<object>item)
                    self._stage(c, <object>item, &values[c])
            if found != PyDict_Size(row):
                unknown = sorted(set(map(str, row)) - set(self.ring.names))
                raise SchemaError(
                    f"unknown column(s) {unknown} in dict row; columns are {list(self.ring.names)}")
        elif isinstance(row, list):
            size = PyList_GET_SIZE(row)
            if size != n:
                self._arity(size)
            for c in range(n):
                value = <object>PyList_GET_ITEM(row, c)
                held.append(value)
                self._stage(c, value, &values[c])
        else:
            for c in range(n):
                try:
                    value = getattr(row, self.ring.names[c])
                except AttributeError:
                    raise SchemaError(
                        f"row of type {type(row).__name__} has no field "
                        f"{self.ring.names[c]!r}; expected a tuple, dict or record with "
                        f"fields {list(self.ring.names)}") from None
                held.append(value)
                self._stage(c, value, &values[c])
        return self._check_event_time(values)

    cdef int _check_event_time(self, lp_value* values) except -1:
        cdef int wc = self.c_ring.watermark_column
        if wc >= 0 and values[wc].is_null:
            raise SchemaError(
                f"column {self.ring.names[wc]!r} is the source's event time (its watermark "
                f"column); it cannot be None")
        return 0

    cdef int _arity(self, Py_ssize_t size) except -1:
        raise SchemaError(
            f"row has {size} values, expected {self.ncolumns} ({', '.join(self.ring.names)})")

    # -- pushing ----------------------------------------------------------
    cdef int _push_staged(self, lp_value* values, bint may_wait) except -1:
        """Returns 1 if accepted (late rows included), 0 if full and not waiting."""
        cdef int rc
        while True:
            rc = lp_ring_push(self.c_ring, values)
            if rc == LP_PUSH_OK or rc == LP_PUSH_LATE:
                return 1
            if rc == LP_PUSH_FULL:
                if (self.c_ring.backpressure == LP_DROP_OLDEST and self.ring.batches
                        and not lp_ring_row_fits(self.c_ring) and self.ring._drop_oldest(1)):
                    # The oldest pending data was a queued batch: it went first.
                    continue
                if not may_wait or self.c_ring.backpressure == LP_REJECT:
                    lp_fetch_add(&self.c_ring.rejected, 1)
                    return 0
                rc = self._wait_for_row(values)
                if rc == LP_PUSH_OK:
                    continue
            if rc == LP_PUSH_CLOSED:
                raise self.ring.closed_error()
            if rc == LP_PUSH_TOO_BIG:
                # Its strings would take more than half of the string arena: the
                # row goes as a batch of one (its strings in their own buffer),
                # in order with everything else.
                chunk, event_times = self._build(values, 1)
                if self.ring.enqueue_batch(chunk, 1, event_times, may_wait):
                    return 1
                lp_fetch_add(&self.c_ring.rejected, 1)
                return 0
            raise RuntimeError(f"unexpected ring result {rc}")

    cdef int _wait_for_row(self, lp_value* values) except -1:
        """Wait (GIL released) until the row fits; LP_PUSH_OK or LP_PUSH_CLOSED.
        Ctrl-C raises KeyboardInterrupt, checked between slices of the wait;
        the row is then not pushed."""
        cdef int rc = LP_PUSH_FULL
        while rc == LP_PUSH_FULL:
            with nogil:
                rc = lp_ring_wait_for_row(self.c_ring, values, SIGNAL_CHECK_US)
            if rc == LP_PUSH_FULL:
                PyErr_CheckSignals()
        return rc

    cdef int _push(self, object row, bint may_wait) except -1:
        cdef lp_value stack_values[STACK_COLUMNS]
        cdef lp_value* values = stack_values
        cdef list held = None
        if not isinstance(row, tuple):
            held = []
        if self.ncolumns > STACK_COLUMNS:
            values = <lp_value*>PyMem_Malloc(self.ncolumns * sizeof(lp_value))
            if values == NULL:
                raise MemoryError()
        try:
            self._stage_row(row, values, held)
            return self._push_staged(values, may_wait)
        finally:
            if values != stack_values:
                PyMem_Free(values)

    def push(self, row):
        """Append one row; waits, drops or raises `Full` when the ring is full."""
        if self._push(row, True) == 0:
            rows = lp_ring_pending(self.c_ring)
            if rows < self.c_ring.capacity:
                raise FullError(
                    f"the source's string arena ({self.c_ring.arena_size} bytes) is full with "
                    f"{rows} of {self.c_ring.capacity} rows pending, and backpressure is "
                    f"'reject'; raise buffer_size for longer strings")
            raise FullError(
                f"source ring is full ({self.c_ring.capacity} rows) and backpressure is 'reject'")

    def try_push(self, row):
        """Append one row if there is room now; never blocks. Returns False when full."""
        return self._push(row, False) == 1

    def stage_rows(self, rows):
        """Convert rows (a sequence of tuples, lists, dicts or records) into one
        Arrow batch of the ring's schema, every row checked before anything is
        built: ``(chunk, event_times)``, the event times an int64 array when the
        ring has a watermark column (else None); None when there are no rows.
        The batch is queued whole (`Ring.enqueue_batch`), so that ``push_batch``
        is all or nothing."""
        if not isinstance(rows, (list, tuple)):
            rows = list(rows)
        cdef Py_ssize_t n = len(rows)
        cdef Py_ssize_t r
        cdef int width = self.ncolumns
        if n == 0:
            return None
        cdef lp_value* values = <lp_value*>PyMem_Malloc(n * width * sizeof(lp_value))
        if values == NULL:
            raise MemoryError()
        held = []
        try:
            for r in range(n):
                try:
                    self._stage_row(rows[r], values + r * width, held)
                except TypeError as exc:
                    raise type(exc)(f"row {r}: {exc}") from None
            return self._build(values, n)
        finally:
            PyMem_Free(values)

    cdef tuple _build(self, lp_value* values, Py_ssize_t n):
        """``n`` staged rows as ``(chunk, event_times)`` (see `stage_rows`)."""
        cdef ArrowChunk chunk = ArrowChunk.__new__(ArrowChunk)
        cdef ArrowError error
        cdef int64_t[::1] times
        cdef Py_ssize_t r
        cdef int wc = self.c_ring.watermark_column
        if lp_rows_to_array(self.c_ring, values, n, &chunk.array, &error) != 0:
            raise SchemaError(error.message.decode(errors="replace"))
        if ArrowSchemaDeepCopy(&self.c_ring.schema, &chunk.schema) != 0:
            raise MemoryError("copying the ring schema failed")
        if wc < 0:
            return chunk, None
        event_times = np.empty(n, dtype=np.int64)
        times = event_times
        for r in range(n):
            times[r] = values[r * self.ncolumns + wc].i
        return chunk, event_times
