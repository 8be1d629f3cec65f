/* Sequencing, backpressure and waiting for the source ring (see lp_ring.h). */
#include "lp_ring.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A parked thread re-checks at least this often, so a lost wake-up (which the
 * protocol below rules out) could only ever cost this much latency. */
#define LP_PARK_SLICE_US 20000

static int lp_type_width(int type) {
  switch (type) {
    case LP_STRING: return 2 * (int)sizeof(int64_t);
    case LP_FLOAT64: case LP_INT64: case LP_TIMESTAMP: return 8;
    case LP_FLOAT32: case LP_INT32: case LP_DATE: return 4;
    case LP_INT16: return 2;
    case LP_BOOL: return 1;
    default: return -1;
  }
}

static void* lp_alloc_touched(int64_t bytes) {
  /* Touch every page now so steady-state pushes never page-fault. */
  void* p = NULL;
  if (posix_memalign(&p, LP_CACHE_LINE, bytes > 0 ? (size_t)bytes : LP_CACHE_LINE)) return NULL;
  memset(p, 0, bytes > 0 ? (size_t)bytes : LP_CACHE_LINE);
  return p;
}

int lp_ring_init(lp_ring* ring, int64_t capacity, int64_t arena_size, int ncolumns,
                 const int* types, struct ArrowSchema* schema, int watermark_column,
                 int64_t watermark_delay, int backpressure, lp_wait_strategy wait,
                 lp_doorbell* doorbell) {
  memset(ring, 0, sizeof(*ring));
  ring->capacity = capacity;
  ring->mask = capacity - 1;
  ring->max_event_time = LP_NO_WATERMARK;
  ring->explicit_watermark = LP_NO_WATERMARK;
  ring->batch_head = INT64_MAX;
  ring->watermark_column = watermark_column;
  ring->watermark_delay = watermark_delay;
  ring->backpressure = backpressure;
  ring->wait = wait;
  ring->doorbell = doorbell;
  ring->ncolumns = ncolumns;
  ring->columns = calloc((size_t)ncolumns, sizeof(lp_column));
  ring->row_arena_end = lp_alloc_touched(capacity * (int64_t)sizeof(int64_t));
  if (!ring->columns || !ring->row_arena_end) return ENOMEM;
  int has_strings = 0;
  for (int c = 0; c < ncolumns; c++) {
    lp_column* col = &ring->columns[c];
    col->type = types[c];
    col->width = lp_type_width(types[c]);
    if (col->width < 0) return EINVAL;
    col->values = lp_alloc_touched(capacity * col->width);
    col->valid = lp_alloc_touched(capacity);
    if (!col->values || !col->valid) return ENOMEM;
    has_strings |= types[c] == LP_STRING;
  }
  if (has_strings) {
    ring->arena_size = arena_size;
    ring->arena_mask = arena_size - 1;
    ring->arena = lp_alloc_touched(arena_size);
    if (!ring->arena) return ENOMEM;
  }
  ArrowSchemaMove(schema, &ring->schema);
  pthread_mutex_init(&ring->space_mutex, NULL);
  pthread_cond_init(&ring->space_cond, NULL);
  return 0;
}

void lp_ring_destroy(lp_ring* ring) {
  if (ring->columns) {
    for (int c = 0; c < ring->ncolumns; c++) {
      free(ring->columns[c].values);
      free(ring->columns[c].valid);
    }
    free(ring->columns);
    ring->columns = NULL;
  }
  free(ring->row_arena_end);
  free(ring->arena);
  ring->row_arena_end = NULL;
  ring->arena = NULL;
  if (ring->schema.release) ring->schema.release(&ring->schema);
  pthread_mutex_destroy(&ring->space_mutex);
  pthread_cond_destroy(&ring->space_cond);
}

void lp_ring_set_multi_producer(lp_ring* ring) {
  /* seq_cst: every later claim by any producer sees the CAS protocol on. */
  lp_store_seq_cst(&ring->multi_producer, 1);
}

int64_t lp_ring_watermark(const lp_ring* ring) {
  if (lp_load_acquire(&ring->closed) == LP_RING_ENDED) return LP_CLOSED_WATERMARK;
  int64_t wm = lp_load_acquire(&ring->explicit_watermark);
  int64_t max_time = lp_load_acquire(&ring->max_event_time);
  if (ring->watermark_column >= 0 && max_time != LP_NO_WATERMARK) {
    int64_t derived = max_time - ring->watermark_delay;
    if (derived > wm) wm = derived;
  }
  return wm;
}

void lp_ring_advance_watermark(lp_ring* ring, int64_t event_time) {
  lp_fetch_max(&ring->explicit_watermark, event_time);
  if (ring->doorbell) lp_doorbell_ring(ring->doorbell);
}

void lp_ring_advance_event_time(lp_ring* ring, int64_t event_time) {
  lp_fetch_max(&ring->max_event_time, event_time);
}

/* Room taken if the next row had sequence `claim`: one capacity for ring rows
 * and queued batch rows (see lp_ring.h). */
static inline int64_t lp_room_used(const lp_ring* ring, int64_t claim) {
  /* acquire on read: the consumer finished copying the slots below it. */
  return claim - lp_load_acquire(&ring->read) + lp_load_acquire(&ring->batch_rows);
}

int64_t lp_ring_pending(const lp_ring* ring) {
  return lp_room_used(ring, lp_load_acquire(&ring->claim));
}

void lp_ring_mark_closed(lp_ring* ring) {
  /* seq_cst: a push that starts after this sees it (no waking: see lp_ring.h). */
  lp_store_seq_cst(&ring->closed, LP_RING_ENDED);
}

void lp_ring_close(lp_ring* ring) {
  lp_store_seq_cst(&ring->closed, LP_RING_ENDED);
  lp_ring_wake_producers(ring);
  if (ring->doorbell) lp_doorbell_ring(ring->doorbell);
}

void lp_ring_seal(lp_ring* ring) {
  /* CAS: a ring already ended stays ended (its watermark is +inf). */
  lp_cas(&ring->closed, LP_RING_OPEN, LP_RING_SEALED);
  lp_ring_wake_producers(ring);
}

void lp_ring_wake_producers(lp_ring* ring) {
  /* seq_cst load pairs with the seq_cst increment of space_parked: either the
   * parked producer sees the new read position, or we see it parked. */
  if (lp_load_seq_cst(&ring->space_parked) > 0) {
    pthread_mutex_lock(&ring->space_mutex);
    pthread_cond_broadcast(&ring->space_cond);
    pthread_mutex_unlock(&ring->space_mutex);
  }
}

static int64_t lp_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void lp_timed_wait(pthread_cond_t* cond, pthread_mutex_t* mutex, int64_t us) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = ts.tv_nsec + (us % 1000000) * 1000;
  ts.tv_sec += us / 1000000 + ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  pthread_cond_timedwait(cond, mutex, &ts);
}

int lp_ring_wait_for_space(lp_ring* ring, lp_space_predicate has_space, int64_t arg,
                           int64_t timeout_us) {
  int64_t spins = ring->wait.kind == LP_WAIT_SPIN_YIELD ? ring->wait.spins : 0;
  int64_t deadline = lp_now_us() + timeout_us;
  for (int64_t i = 0;; i++) {
    if (lp_load_acquire(&ring->closed)) return LP_PUSH_CLOSED;
    if (has_space(ring, arg)) return LP_PUSH_OK;
    /* The clock is read every 64 rounds only: spinning stays a tight loop. */
    if ((i & 63) == 63 && lp_now_us() >= deadline) return LP_PUSH_FULL;
    if (ring->wait.kind == LP_WAIT_SPIN || i < spins) {
      lp_cpu_relax();
    } else if (ring->wait.kind == LP_WAIT_SPIN_YIELD && i < 2 * spins) {
      sched_yield();
    } else {
      /* Park: spin_yield falls back here too, so a producer blocked on a slow
       * consumer stops burning a core. */
      int64_t left = deadline - lp_now_us();
      if (left <= 0) return LP_PUSH_FULL;
      pthread_mutex_lock(&ring->space_mutex);
      lp_fetch_add(&ring->space_parked, 1);
      lp_fence_seq_cst();
      if (!has_space(ring, arg) && !lp_load_acquire(&ring->closed)) {
        lp_timed_wait(&ring->space_cond, &ring->space_mutex,
                      left < LP_PARK_SLICE_US ? left : LP_PARK_SLICE_US);
      }
      lp_fetch_add(&ring->space_parked, -1);
      pthread_mutex_unlock(&ring->space_mutex);
    }
  }
}

int lp_ring_batch_fits(const lp_ring* ring, int64_t rows) {
  /* A batch larger than the ring is admitted into an empty ring, so it cannot
   * wait forever ('reject' refuses it before asking). */
  int64_t used = lp_ring_pending(ring);
  return used == 0 || used + rows <= ring->capacity;
}

/* ---- pushing rows ---------------------------------------------------- */

/* Where a string of `len` bytes goes when the arena head is at `head`: strings
 * never wrap, the head skips to the next lap instead. */
static inline int64_t lp_arena_place(const lp_ring* ring, int64_t head, int64_t len) {
  int64_t offset = head & ring->arena_mask;
  if (offset + len > ring->arena_size) head += ring->arena_size - offset;
  return head;
}

static inline int64_t lp_row_arena_end(const lp_ring* ring, const lp_value* values,
                                       int64_t head) {
  for (int c = 0; c < ring->ncolumns; c++) {
    if (ring->columns[c].type == LP_STRING && !values[c].is_null && values[c].len > 0) {
      head = lp_arena_place(ring, head, values[c].len) + values[c].len;
    }
  }
  return head;
}

static inline int lp_arena_fits(const lp_ring* ring, const lp_value* values) {
  if (!ring->arena) return 1;
  int64_t head = lp_load_relaxed(&ring->arena_head);
  int64_t end = lp_row_arena_end(ring, values, head);
  return end - lp_load_acquire(&ring->arena_tail) <= ring->arena_size;
}

static int lp_slot_free(const lp_ring* ring, int64_t unused) {
  (void)unused;
  return lp_ring_pending(ring) < ring->capacity;
}

int lp_ring_row_fits(const lp_ring* ring) { return lp_slot_free(ring, 0); }

static int lp_arena_free(const lp_ring* ring, int64_t values_ptr) {
  return lp_arena_fits(ring, (const lp_value*)(intptr_t)values_ptr);
}

/* Drop up to max_rows of the oldest unread rows, none at or past sequence
 * `below`. Returns the rows dropped, 0 if there was nothing published to drop
 * below `below`, or -1 if the CAS lost (the ring moved: the consumer's or
 * another producer's doing, so the caller re-checks its room). */
static int64_t lp_drop_rows(lp_ring* ring, int64_t max_rows, int64_t below) {
  int64_t oldest = lp_load_acquire(&ring->read);
  int64_t end = lp_load_acquire(&ring->published);
  if (below < end) end = below;
  int64_t n = end - oldest < max_rows ? end - oldest : max_rows;
  if (n <= 0) return 0;
  /* Read the rows' arena end before the CAS: once read moves past them,
   * another producer may reuse the slots. */
  int64_t arena_end = ring->row_arena_end[(oldest + n - 1) & ring->mask];
  if (!lp_cas(&ring->read, oldest, oldest + n)) return -1;
  lp_fetch_max(&ring->arena_tail, arena_end);
  lp_fetch_add(&ring->dropped, n);
  return n;
}

/* Drop the oldest unread row. Returns 1 if the ring moved (ours or the
 * consumer's doing), 0 if there was nothing to drop. With keep_batch_order
 * (room is short) only rows older than the oldest queued batch qualify: when
 * the batch is the oldest, the Cython layer drops it. Without it (the string
 * arena is short, which only ring rows occupy) any published row does. */
static int lp_drop_oldest(lp_ring* ring, int keep_batch_order) {
  int64_t below = keep_batch_order ? lp_load_acquire(&ring->batch_head) : INT64_MAX;
  return lp_drop_rows(ring, 1, below) != 0;
}

int64_t lp_ring_drop_oldest(lp_ring* ring, int64_t max_rows) {
  for (;;) {
    int64_t n = lp_drop_rows(ring, max_rows, lp_load_acquire(&ring->batch_head));
    if (n >= 0) return n;
  }
}

static int64_t lp_string_bytes(const lp_ring* ring, const lp_value* values) {
  int64_t total = 0;
  for (int c = 0; c < ring->ncolumns; c++) {
    if (ring->columns[c].type == LP_STRING && !values[c].is_null) total += values[c].len;
  }
  return total;
}

/* Called when the ring has no room (has_space == lp_slot_free) or its string
 * arena is short: make room (drop_oldest) and retry (-1), or answer FULL. The
 * caller counts rejections, and waits (without the GIL) and retries. */
static int lp_on_full(lp_ring* ring, lp_space_predicate has_space) {
  if (ring->backpressure == LP_DROP_OLDEST && lp_drop_oldest(ring, has_space == lp_slot_free)) {
    return -1;
  }
  return LP_PUSH_FULL;
}

static inline void lp_write_row(lp_ring* ring, int64_t seq, const lp_value* values) {
  int64_t slot = seq & ring->mask;
  int64_t head = lp_load_relaxed(&ring->arena_head);
  for (int c = 0; c < ring->ncolumns; c++) {
    lp_column* col = &ring->columns[c];
    const lp_value* v = &values[c];
    col->valid[slot] = !v->is_null;
    uint8_t* dst = col->values + slot * col->width;
    switch (col->type) {
      case LP_FLOAT64: *(double*)dst = v->is_null ? 0.0 : v->f; break;
      case LP_FLOAT32: *(float*)dst = v->is_null ? 0.0f : (float)v->f; break;
      case LP_INT64: case LP_TIMESTAMP: *(int64_t*)dst = v->is_null ? 0 : v->i; break;
      case LP_INT32: case LP_DATE: *(int32_t*)dst = v->is_null ? 0 : (int32_t)v->i; break;
      case LP_INT16: *(int16_t*)dst = v->is_null ? 0 : (int16_t)v->i; break;
      case LP_BOOL: *dst = v->is_null ? 0 : (uint8_t)(v->i != 0); break;
      case LP_STRING: {
        int64_t len = v->is_null ? 0 : v->len;
        int64_t pos = head;
        if (len > 0) {
          pos = lp_arena_place(ring, head, len);
          memcpy(ring->arena + (pos & ring->arena_mask), v->str, (size_t)len);
          head = pos + len;
        }
        ((int64_t*)dst)[0] = pos;
        ((int64_t*)dst)[1] = len;
        break;
      }
    }
  }
  ring->row_arena_end[slot] = head;
  lp_store_relaxed(&ring->arena_head, head);
}

int lp_ring_push(lp_ring* ring, const lp_value* values) {
  int wc = ring->watermark_column;
  if (wc >= 0 && values[wc].i < lp_ring_watermark(ring)) {
    if (lp_load_acquire(&ring->closed)) return LP_PUSH_CLOSED;
    lp_fetch_add(&ring->late, 1);
    return LP_PUSH_LATE;
  }
  if (ring->arena && 2 * lp_string_bytes(ring, values) > ring->arena_size) return LP_PUSH_TOO_BIG;

  int multi = (int)lp_load_acquire(&ring->multi_producer);
  int64_t seq;
  for (;;) {
    if (lp_load_acquire(&ring->closed)) return LP_PUSH_CLOSED;
    seq = lp_load_acquire(&ring->claim);
    /* Room is shared with queued batch rows (one more load, on the line of
     * `read`); claim - read < capacity, which slot reuse needs, follows. */
    int slot_ok = lp_room_used(ring, seq) < ring->capacity;
    /* Under MPSC another producer may still move the arena head before our
     * turn, so this check is a best effort that the loop after the claim
     * completes. */
    int arena_ok = lp_arena_fits(ring, values);
    if (slot_ok && arena_ok) {
      if (!multi) {
        /* SPSC: the only writer of claim, a plain store suffices. */
        lp_store_relaxed(&ring->claim, seq + 1);
        break;
      }
      if (lp_cas(&ring->claim, seq, seq + 1)) break;
      continue;
    }
    int rc = lp_on_full(ring, slot_ok ? lp_arena_free : lp_slot_free);
    if (rc >= 0) return rc;
  }
  if (multi) {
    /* Publish in sequence order: predecessors finish first, which also makes
     * the arena head ours. Under the GIL this never spins. */
    while (lp_load_acquire(&ring->published) != seq) lp_cpu_relax();
    while (!lp_arena_fits(ring, values)) {
      /* The slot is claimed and cannot be given back, so even REJECT waits;
       * once the ring is closed nobody will make room, so the oldest unread
       * rows give way (counted as dropped). */
      int closing = lp_load_acquire(&ring->closed) != 0;
      if ((ring->backpressure == LP_DROP_OLDEST || closing) && lp_drop_oldest(ring, 0)) continue;
      if (!closing) lp_ring_wait_for_space(ring, lp_arena_free, (int64_t)(intptr_t)values,
                                           LP_PARK_SLICE_US);
    }
  }
  lp_write_row(ring, seq, values);
  if (wc >= 0) {
    if (multi) lp_fetch_max(&ring->max_event_time, values[wc].i);
    else if (values[wc].i > ring->max_event_time) lp_store_release(&ring->max_event_time, values[wc].i);
  }
  /* seq_cst store: releases the row to the consumer, and orders before the
   * load of `parked` below (StoreLoad) so a parking consumer is never missed. */
  lp_store_seq_cst(&ring->published, seq + 1);
  if (ring->doorbell && lp_load_seq_cst(&ring->doorbell->parked) > 0) {
    lp_doorbell_ring(ring->doorbell);
  }
  return LP_PUSH_OK;
}

/* ---- doorbell -------------------------------------------------------- */

void lp_doorbell_init(lp_doorbell* bell) {
  memset(bell, 0, sizeof(*bell));
  pthread_mutex_init(&bell->mutex, NULL);
  pthread_cond_init(&bell->cond, NULL);
}

void lp_doorbell_destroy(lp_doorbell* bell) {
  pthread_mutex_destroy(&bell->mutex);
  pthread_cond_destroy(&bell->cond);
}

void lp_doorbell_ring(lp_doorbell* bell) {
  lp_fetch_add(&bell->rung, 1);
  if (lp_load_seq_cst(&bell->parked) > 0) {
    pthread_mutex_lock(&bell->mutex);
    pthread_cond_broadcast(&bell->cond);
    pthread_mutex_unlock(&bell->mutex);
  }
}

static int lp_any_ready(lp_ring** rings, int nrings) {
  for (int i = 0; i < nrings; i++) {
    lp_ring* r = rings[i];
    if (lp_load_acquire(&r->published) > lp_load_acquire(&r->read) ||
        lp_load_acquire(&r->batches_queued) > 0) {
      return 1;
    }
  }
  return 0;
}

int lp_doorbell_wait(lp_doorbell* bell, lp_ring** rings, int nrings, int64_t seen,
                     lp_wait_strategy wait, int64_t timeout_us) {
  int64_t deadline = timeout_us < 0 ? INT64_MAX : lp_now_us() + timeout_us;
  int64_t spins = wait.kind == LP_WAIT_SPIN ? INT64_MAX
                : wait.kind == LP_WAIT_SPIN_YIELD ? wait.spins : 0;
  for (int64_t i = 0;; i++) {
    if (lp_any_ready(rings, nrings) || lp_load_acquire(&bell->rung) != seen) return 1;
    if ((i & 63) == 63 && lp_now_us() >= deadline) return 0;
    if (i < spins) {
      lp_cpu_relax();
    } else if (i < 2 * spins) {
      sched_yield();
    } else {
      break;  /* spin_yield backs off to a park: an idle engine uses no CPU */
    }
  }
  int ready = 0;
  pthread_mutex_lock(&bell->mutex);
  /* seq_cst increment pairs with the producer's seq_cst publish + load of
   * parked (Dekker): either it sees us parked, or we see its row. */
  lp_fetch_add(&bell->parked, 1);
  lp_fence_seq_cst();
  for (;;) {
    ready = lp_any_ready(rings, nrings) || lp_load_acquire(&bell->rung) != seen;
    int64_t now = lp_now_us();
    if (ready || now >= deadline) break;
    int64_t slice = deadline - now < LP_PARK_SLICE_US ? deadline - now : LP_PARK_SLICE_US;
    lp_timed_wait(&bell->cond, &bell->mutex, slice);
  }
  lp_fetch_add(&bell->parked, -1);
  pthread_mutex_unlock(&bell->mutex);
  return ready;
}

static int lp_row_fits(const lp_ring* ring, int64_t values_ptr) {
  return lp_slot_free(ring, 0) && lp_arena_free(ring, values_ptr);
}

int lp_ring_wait_for_row(lp_ring* ring, const lp_value* values, int64_t timeout_us) {
  return lp_ring_wait_for_space(ring, lp_row_fits, (int64_t)(intptr_t)values, timeout_us);
}
