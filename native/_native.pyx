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

from collections import deque

from cpython.datetime cimport (
    PyDateTime_Check,
    PyDate_Check,
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
from cpython.long cimport PyLong_AsLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport (
    INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int64_t,
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
        int64_t batch_rows
        int64_t batches_queued
        int64_t batch_head
        int64_t capacity
        int64_t arena_size
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
    int lp_ring_push(lp_ring* ring, const lp_value* values, int wait)
    int lp_ring_wait_for_row(lp_ring* ring, const lp_value* values) nogil
    int lp_ring_wait_for_space(lp_ring* ring, lp_space_predicate has_space, int64_t arg) nogil
    int lp_ring_batch_fits(const lp_ring* ring, int64_t rows) noexcept nogil
    int lp_schema_init(ArrowSchema* schema, int ncolumns, const char** names,
                       const int* types, const int* nullable)
    int64_t lp_ring_take(lp_ring* ring, int64_t max_rows, ArrowArray* out, ArrowError* error)
    int64_t lp_ring_watermark(const lp_ring* ring)
    void lp_ring_advance_watermark(lp_ring* ring, int64_t event_time)
    void lp_ring_advance_event_time(lp_ring* ring, int64_t event_time)
    int64_t lp_ring_pending(const lp_ring* ring)
    int lp_ring_row_fits(const lp_ring* ring)
    int64_t lp_ring_drop_oldest(lp_ring* ring, int64_t max_rows)
    void lp_ring_close(lp_ring* ring)
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

# Errors are raised as the classes the package registers (set_errors), so this
# module needs no import from the package above it.
cdef object SchemaError = TypeError
cdef object FullError = RuntimeError
cdef object ClosedError = RuntimeError


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


def late_rows(const int64_t[::1] event_times, int64_t watermark, int64_t delay):
    """Scan a batch's event times in arrival order: row i is late if it is
    older than max(watermark, max(event_times[:i]) - delay).

    Returns ``(late_count, max_event_time, keep)`` where ``keep`` is a bytes
    mask of the rows to keep, or None when no row is late. One pass in C:
    numpy's accumulate is not vectorised and costs ~3 ns a row."""
    cdef Py_ssize_t n = event_times.shape[0]
    cdef Py_ssize_t i, late = 0
    cdef int64_t running = INT64_MIN
    cdef int64_t bound = watermark
    cdef int64_t t
    keep = bytearray(n)
    cdef unsigned char[::1] mask = keep
    for i in range(n):
        t = event_times[i]
        if t < bound:
            late += 1
            continue
        mask[i] = 1
        if t > running:
            running = t
            if running - delay > bound:
                bound = running - delay
    return late, running, (bytes(keep) if late else None)


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
    cdef object batches          # deque of (sequence tag, batch object, rows)
    cdef readonly object doorbell
    cdef readonly int producers
    cdef int64_t batch_rows_pushed
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
        return lp_ring_watermark(&self.ring) == LP_CLOSED_WATERMARK

    @property
    def watermark(self):
        """Current watermark in microseconds (NO_WATERMARK before any event)."""
        return lp_ring_watermark(&self.ring)

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

    def count_late(self, int64_t rows):
        lp_fetch_add(&self.ring.late, rows)

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

    def closed_error(self, str what="the source is closed"):
        """The `Closed` exception a push into this closed ring raises."""
        message = what if self.close_reason is None else f"{what}: {self.close_reason}"
        error = ClosedError(message + "; no more rows are accepted")
        error.__cause__ = self.close_cause
        return error

    # -- Arrow batches ----------------------------------------------------
    def enqueue_batch(self, batch, int64_t rows, int64_t max_event_time, bint wait=True):
        """Queue an Arrow batch after every row pushed so far; its rows take
        room like ring rows do. Returns False when it does not fit and must
        not wait ('reject', or ``wait=False``).

        When it does not fit: 'block' waits (GIL released, the ring's wait
        strategy) until the engine has drained enough; 'drop_oldest' drops the
        oldest pending data (ring rows, whole queued batches) until it fits.
        A batch larger than the capacity is admitted only into an empty ring
        ('block' waits for the engine to drain everything, 'drop_oldest'
        drops everything pending); 'reject' never admits one, so its pending
        rows never exceed the capacity."""
        cdef int rc
        if lp_ring_watermark(&self.ring) == LP_CLOSED_WATERMARK:
            raise self.closed_error()
        if rows > self.ring.capacity and self.ring.backpressure == LP_REJECT:
            return False
        while not lp_ring_batch_fits(&self.ring, rows):
            if self.ring.backpressure == LP_DROP_OLDEST and self._drop_oldest(rows):
                continue
            if self.ring.backpressure == LP_REJECT or not wait:
                return False
            with nogil:
                rc = lp_ring_wait_for_space(&self.ring, <lp_space_predicate>lp_ring_batch_fits, rows)
            if rc == LP_PUSH_CLOSED:
                raise self.closed_error("the source was closed while waiting for room")
        if lp_ring_watermark(&self.ring) == LP_CLOSED_WATERMARK:
            raise self.closed_error()
        # Take the room at once: no Python code (so no other producer) runs
        # between the check above and this add, which keeps the check exact.
        lp_fetch_add(&self.ring.batch_rows, rows)
        cdef int64_t tag = lp_load_acquire(&self.ring.claim)
        self.batches.append((tag, batch, rows))
        if len(self.batches) == 1:
            lp_store_release(&self.ring.batch_head, tag)
        lp_fetch_add(&self.ring.batches_queued, 1)
        self.batch_rows_pushed += rows
        if max_event_time != LP_NO_WATERMARK:
            lp_ring_advance_event_time(&self.ring, max_event_time)
        if self.doorbell is not None:
            (<Doorbell>self.doorbell).ring()
        return True

    cdef tuple _pop_batch(self):
        """Unqueue the oldest batch and give its room back."""
        cdef tuple entry = self.batches.popleft()
        lp_store_release(&self.ring.batch_head,
                         self.batches[0][0] if self.batches else INT64_MAX)
        lp_fetch_add(&self.ring.batch_rows, -<int64_t>entry[2])
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
        lp_fetch_add(&self.ring.dropped, <int64_t>entry[2])
        return True

    # -- consuming ----------------------------------------------------------
    def take(self, int64_t max_rows=1 << 62):
        """Everything readable now, in push order: ``(watermark, segments)``,
        each segment an `ArrowChunk` of rows or a batch object as queued.

        The watermark is read first, so it never runs ahead of the rows taken
        with it."""
        cdef int64_t watermark = lp_ring_watermark(&self.ring)
        segments = []
        cdef int64_t limit, read
        cdef ArrowChunk chunk
        while max_rows > 0:
            read = lp_load_acquire(&self.ring.read)
            if self.batches:
                tag, batch, rows = self.batches[0]
                if tag <= read:
                    self._pop_batch()
                    segments.append(batch)
                    max_rows -= rows
                    continue
                limit = min(tag - read, max_rows)
            else:
                limit = max_rows
            chunk = self._take_rows(limit)
            if chunk is None:
                break
            segments.append(chunk)
            max_rows -= len(chunk)
        return watermark, segments

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
        cdef int t = self.ring.types[c]
        cdef Py_ssize_t size
        out.is_null = 0
        if value is None:
            if self.ring.not_null[c]:
                raise SchemaError(
                    f"column {self.ring.names[c]!r} is NOT NULL, got None")
            out.is_null = 1
            out.len = 0
            out.i = 0
            return 0
        if t == LP_FLOAT64 or t == LP_FLOAT32:
            if type(value) is float:
                out.f = PyFloat_AS_DOUBLE(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out.f = float(value)
            else:
                self._bad(c, value)
        elif t == LP_STRING:
            if not isinstance(value, str):
                self._bad(c, value)
            out.str = PyUnicode_AsUTF8AndSize(value, &size)
            out.len = size
        elif t == LP_TIMESTAMP:
            if type(value) is int:
                out.i = self._int_in_range(c, value, INT64_MIN, INT64_MAX)
            elif PyDateTime_Check(value):
                out.i = datetime_to_micros(value)
            else:
                self._bad(c, value)
        elif t == LP_BOOL:
            if value is True:
                out.i = 1
            elif value is False:
                out.i = 0
            else:
                self._bad(c, value)
        elif t == LP_DATE:
            if PyDateTime_Check(value) or not (PyDate_Check(value) or type(value) is int):
                self._bad(c, value)
            if type(value) is int:
                out.i = self._int_in_range(c, value, INT32_MIN, INT32_MAX)
            else:
                out.i = days_from_civil(date_year(value), date_month(value), date_day(value))
        else:
            if type(value) is int:
                if t == LP_INT64:
                    out.i = self._int_in_range(c, value, INT64_MIN, INT64_MAX)
                elif t == LP_INT32:
                    out.i = self._int_in_range(c, value, INT32_MIN, INT32_MAX)
                else:
                    out.i = self._int_in_range(c, value, INT16_MIN, INT16_MAX)
            elif hasattr(value, "__index__") and not isinstance(value, bool):
                # numpy integers and other integer-likes, off the fast path
                return self._stage(c, value.__index__(), out)
            else:
                self._bad(c, value)
        return 0

    cdef int64_t _int_in_range(self, int c, object value, int64_t low, int64_t high) except? -1:
        cdef int64_t v
        try:
            v = PyLong_AsLongLong(value)
        except OverflowError:
            v = high
            low, high = 0, -1  # forces the range error below
        if v < low or v > high:
            raise SchemaError(
                f"column {self.ring.names[c]!r}: {value!r} is out of range for "
                f"{TYPE_NAMES[self.ring.types[c]]} ({low}..{high})")
        return v

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
            rc = lp_ring_push(self.c_ring, values, 0)
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
                with nogil:
                    rc = lp_ring_wait_for_row(self.c_ring, values)
                if rc == LP_PUSH_OK:
                    continue
            if rc == LP_PUSH_CLOSED:
                raise self.ring.closed_error()
            if rc == LP_PUSH_TOO_BIG:
                raise SchemaError(
                    f"the row's strings need more than half of the ring's "
                    f"{self.c_ring.arena_size}-byte string arena; raise buffer_size")
            raise RuntimeError(f"unexpected ring result {rc}")

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

    def push_rows(self, rows):
        """Append every row of a sequence, all or nothing on a bad row."""
        cdef Py_ssize_t n = len(rows)
        cdef Py_ssize_t r
        cdef int width = self.ncolumns
        if n == 0:
            return
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
            if self.c_ring.backpressure == LP_REJECT and (
                    n > self.c_ring.capacity - lp_ring_pending(self.c_ring)):
                lp_fetch_add(&self.c_ring.rejected, n)
                raise FullError(
                    f"{n} rows do not fit the source ring ({lp_ring_pending(self.c_ring)} of "
                    f"{self.c_ring.capacity} rows pending) and backpressure is 'reject'")
            for r in range(n):
                self._push_staged(values + r * width, True)
        finally:
            PyMem_Free(values)
