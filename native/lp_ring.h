/* The source ring: a pre-allocated power-of-two ring of rows stored as
 * columns, with Disruptor-style sequence counters.
 *
 * Sequences are absolute row numbers that never wrap (int64). A row with
 * sequence s lives in slot s & mask of every column.
 *   claim      next sequence a producer may take       (producers)
 *   published  every row below it is fully written     (producers → consumer)
 *   read       every row below it is consumed/dropped  (consumer, drop_oldest)
 * Each counter sits on its own cache line so producers and the consumer do not
 * invalidate each other's lines (false sharing).
 *
 * Room: the ring has ONE capacity, shared by ring rows (claim - read) and the
 * rows of queued Arrow batches (batch_rows, kept by the Cython layer, which
 * holds the batches themselves). A row needs
 *     (claim - read) + batch_rows < capacity
 * and a batch of n rows needs (claim - read) + batch_rows + n <= capacity,
 * except that a batch larger than the capacity is admitted into an empty ring
 * (pending == 0) so that 'block' cannot deadlock on it; 'reject' refuses such
 * a batch outright, so pending never exceeds the capacity under 'reject'.
 * Producers are serialised by the GIL whenever they check and take room (the
 * checks run in C with the GIL held and only waiting releases it), which is
 * what makes the check over two counters exact; slot reuse never depends on
 * batch_rows (claim - read < capacity is implied), so a stale batch_rows could
 * only ever misjudge room, never overwrite an unread row.
 *
 * Strings go to one byte arena per ring, also addressed by absolute byte
 * positions; a string never wraps (the head skips to the arena start instead),
 * so it can be copied with one memcpy.
 *
 * The ring is SPSC until lp_ring_set_multi_producer(); after that producers
 * claim with a CAS and publish in sequence order. */
#ifndef LP_RING_H
#define LP_RING_H

#include <pthread.h>
#include <stdint.h>

#include "lp_atomic.h"
#include "nanoarrow/nanoarrow.h"

enum lp_type {
  LP_STRING = 0,
  LP_FLOAT64 = 1,
  LP_FLOAT32 = 2,
  LP_INT64 = 3,
  LP_INT32 = 4,
  LP_INT16 = 5,
  LP_BOOL = 6,
  LP_TIMESTAMP = 7,
  LP_DATE = 8,
};

enum lp_backpressure { LP_BLOCK = 0, LP_DROP_OLDEST = 1, LP_REJECT = 2 };
enum lp_wait_kind { LP_WAIT_SPIN = 0, LP_WAIT_SPIN_YIELD = 1, LP_WAIT_PARK = 2 };

/* Result codes of lp_ring_push. */
enum lp_push_result {
  LP_PUSH_OK = 0,
  LP_PUSH_LATE = 1,      /* older than the watermark: dropped and counted */
  LP_PUSH_FULL = 2,      /* no room (yet: the caller may wait and retry) */
  LP_PUSH_CLOSED = 3,    /* the ring was closed before or while waiting */
  LP_PUSH_TOO_BIG = 4,   /* the row's strings can never fit the arena */
};

/* One converted value of a row, staged before any slot is claimed so that a
 * row that fails conversion never touches the ring. */
typedef struct {
  int64_t i;          /* ints, timestamps (us), dates (days), bools */
  double f;           /* floats */
  const char* str;    /* strings: borrowed UTF-8, valid for the push call */
  int64_t len;
  int is_null;
} lp_value;

typedef struct {
  int type;
  int width;          /* bytes per slot in values */
  uint8_t* values;    /* capacity * width; strings store (int64 pos, int64 len) */
  uint8_t* valid;     /* capacity bytes, 1 = not null */
} lp_column;

typedef struct {
  int kind;
  int64_t spins;
} lp_wait_strategy;

/* Wakes a parked consumer; one per database, shared by its rings. */
typedef struct {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int64_t parked;     /* consumers inside pthread_cond_wait */
  int64_t rung;       /* bumped on every wake-up, so a waiter can tell */
} lp_doorbell;

typedef struct lp_ring {
  /* Producer side: written on every push. */
  _Alignas(LP_CACHE_LINE) int64_t claim;
  int64_t arena_head;
  int64_t max_event_time;
  char _pad0[LP_CACHE_LINE - 3 * sizeof(int64_t)];
  _Alignas(LP_CACHE_LINE) int64_t published;
  char _pad1[LP_CACHE_LINE - sizeof(int64_t)];
  /* Consumer side. batch_rows sits next to `read` because every push loads
   * both: room is shared, and this costs the hot path no extra cache line. */
  _Alignas(LP_CACHE_LINE) int64_t read;
  int64_t arena_tail;
  int64_t batch_rows;       /* rows held by queued Arrow batches (Cython side) */
  char _pad2[LP_CACHE_LINE - 3 * sizeof(int64_t)];
  /* Rarely written: counters, watermark, state. */
  _Alignas(LP_CACHE_LINE) int64_t dropped;
  int64_t late;
  int64_t rejected;
  int64_t explicit_watermark;
  int64_t closed;           /* LP_RING_OPEN, _SEALED or _ENDED (see below) */
  int64_t multi_producer;
  int64_t space_parked;     /* producers parked waiting for room */
  int64_t batches_queued;
  int64_t batch_head;       /* tag of the oldest queued batch; INT64_MAX: none */

  /* Fixed at creation. */
  _Alignas(LP_CACHE_LINE) int64_t capacity;
  int64_t mask;
  int64_t arena_size;
  int64_t arena_mask;
  int64_t watermark_delay;  /* us */
  int watermark_column;     /* -1: no watermark */
  int backpressure;
  lp_wait_strategy wait;
  int ncolumns;
  lp_column* columns;
  int64_t* row_arena_end;   /* arena head after each row, per slot */
  uint8_t* arena;
  struct ArrowSchema schema; /* struct<columns>, owned */
  pthread_mutex_t space_mutex;
  pthread_cond_t space_cond;
  lp_doorbell* doorbell;    /* may be NULL */
} lp_ring;

/* A ring takes pushes while open. Sealed, it refuses them but keeps its
 * watermark (the rows it holds can still be drained and checkpointed before
 * the input ends); ended, its watermark is +inf, so every open window closes. */
#define LP_RING_OPEN 0
#define LP_RING_SEALED 1
#define LP_RING_ENDED 2

#define LP_NO_WATERMARK INT64_MIN
#define LP_CLOSED_WATERMARK INT64_MAX

/* Creation takes the schema (owned afterwards) and column types in order. */
int lp_ring_init(lp_ring* ring, int64_t capacity, int64_t arena_size, int ncolumns,
                 const int* types, struct ArrowSchema* schema, int watermark_column,
                 int64_t watermark_delay, int backpressure, lp_wait_strategy wait,
                 lp_doorbell* doorbell);
void lp_ring_destroy(lp_ring* ring);
void lp_ring_set_multi_producer(lp_ring* ring);

/* Push one staged row; never waits. A full ring answers LP_PUSH_FULL (after
 * drop_oldest made what room it could by dropping ring rows older than the
 * oldest queued batch); the caller waits with lp_ring_wait_for_row, without
 * the GIL and in slices so that it can check for signals, and retries. When
 * the oldest pending data is a queued batch, drop_oldest answers LP_PUSH_FULL
 * too: the batch queue lives in the Cython layer, which drops the batch. */
int lp_ring_push(lp_ring* ring, const lp_value* values);
/* Wait until one more row with these values fits (slot and string arena);
 * LP_PUSH_OK, LP_PUSH_CLOSED, or LP_PUSH_FULL once timeout_us passed. */
int lp_ring_wait_for_row(lp_ring* ring, const lp_value* values, int64_t timeout_us);

/* The struct<columns> schema of a ring, built with nanoarrow. */
int lp_schema_init(struct ArrowSchema* schema, int ncolumns, const char** names,
                   const int* types, const int* nullable);

/* Copy up to max_rows published rows into `out` (a struct array built with
 * nanoarrow; the caller owns it) and consume them. Returns rows taken, or -1
 * with `error` set. */
int64_t lp_ring_take(lp_ring* ring, int64_t max_rows, struct ArrowArray* out,
                     struct ArrowError* error);

/* Build a struct array of the ring's schema from `nrows` staged rows
 * (row-major: values[r * ncolumns + c]), copying strings: a push_batch is
 * queued whole, like an Arrow batch, so that it is admitted all or nothing.
 * Returns 0, or an error code with `error` set. */
int lp_rows_to_array(const lp_ring* ring, const lp_value* values, int64_t nrows,
                     struct ArrowArray* out, struct ArrowError* error);

int64_t lp_ring_watermark(const lp_ring* ring);
void lp_ring_advance_watermark(lp_ring* ring, int64_t event_time);
/* Raise the maximum event time seen (rows queued as Arrow batches). */
void lp_ring_advance_event_time(lp_ring* ring, int64_t event_time);
/* Rows taking room: ring rows not yet consumed plus queued batch rows. */
int64_t lp_ring_pending(const lp_ring* ring);
/* 1 if one more row has room (ignoring the string arena). */
int lp_ring_row_fits(const lp_ring* ring);
/* drop_oldest: drop up to max_rows of the oldest unread ring rows, all of them
 * older than the oldest queued batch (push order is kept: the batch goes
 * first). Counted in `dropped`. Returns the rows dropped. */
int64_t lp_ring_drop_oldest(lp_ring* ring, int64_t max_rows);
void lp_ring_close(lp_ring* ring);
/* Refuse further pushes (waking producers waiting for room, who then get
 * LP_PUSH_CLOSED) without ending the input: the watermark stays as it is. */
void lp_ring_seal(lp_ring* ring);
/* Close without waking anyone: for the child of a fork(), where no other
 * thread exists and a mutex another thread held at the fork stays locked
 * forever (lp_ring_close would lock it to wake parked producers). */
void lp_ring_mark_closed(lp_ring* ring);
/* Wake producers parked for space (after the batch queue shrank, on stop). */
void lp_ring_wake_producers(lp_ring* ring);
/* Wait per the ring's wait strategy until `has_space(ring, arg)` holds;
 * returns LP_PUSH_OK, LP_PUSH_CLOSED when the ring closed meanwhile, or
 * LP_PUSH_FULL when timeout_us passed first (callers wait in slices and check
 * for Ctrl-C between them). Call without the GIL: the consumer needs it. */
typedef int (*lp_space_predicate)(const lp_ring* ring, int64_t arg);
int lp_ring_wait_for_space(lp_ring* ring, lp_space_predicate has_space, int64_t arg,
                           int64_t timeout_us);
/* Predicate for a queued Arrow batch of `rows` rows: it fits the room left,
 * or the ring is empty (a batch larger than the capacity is admitted alone). */
int lp_ring_batch_fits(const lp_ring* ring, int64_t rows);

void lp_doorbell_init(lp_doorbell* bell);
void lp_doorbell_destroy(lp_doorbell* bell);
void lp_doorbell_ring(lp_doorbell* bell);
/* Wait until one of `rings` has unread rows, `rung` moves past `seen`, or
 * timeout_us passes (< 0: forever). Returns 1 if data or a ring, 0 on timeout. */
int lp_doorbell_wait(lp_doorbell* bell, lp_ring** rings, int nrings, int64_t seen,
                     lp_wait_strategy wait, int64_t timeout_us);

#endif
