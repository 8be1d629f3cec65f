/* Taking rows out of the ring as an Arrow struct array built with nanoarrow.
 *
 * The consumer copies the published range into fresh buffers and then frees
 * the slots. Copying (one memcpy per column segment, ~1 ns/row) keeps the ring
 * independent of how long downstream holds on to a batch; the resulting
 * buffers are handed to Polars through the C Data Interface without a copy. */
#include <errno.h>
#include <string.h>

#include "lp_ring.h"

static int64_t lp_count_nulls(const uint8_t* valid, int64_t first, int64_t n) {
  int64_t valid_count = 0;
  for (int64_t i = 0; i < n; i++) valid_count += valid[first + i];
  return n - valid_count;
}

static ArrowErrorCode lp_pack_bits(struct ArrowBitmap* bitmap, const uint8_t* bytes,
                                   int64_t n) {
  NANOARROW_RETURN_NOT_OK(ArrowBitmapReserve(bitmap, n));
  ArrowBitmapAppendInt8Unsafe(bitmap, (const int8_t*)bytes, n);
  return NANOARROW_OK;
}

int lp_schema_init(struct ArrowSchema* schema, int ncolumns, const char** names,
                   const int* types, const int* nullable) {
  ArrowSchemaInit(schema);
  NANOARROW_RETURN_NOT_OK(ArrowSchemaSetTypeStruct(schema, ncolumns));
  for (int c = 0; c < ncolumns; c++) {
    struct ArrowSchema* child = schema->children[c];
    ArrowErrorCode rc;
    switch (types[c]) {
      case LP_STRING: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_STRING); break;
      case LP_FLOAT64: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_DOUBLE); break;
      case LP_FLOAT32: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_FLOAT); break;
      case LP_INT64: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_INT64); break;
      case LP_INT32: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_INT32); break;
      case LP_INT16: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_INT16); break;
      case LP_BOOL: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_BOOL); break;
      case LP_DATE: rc = ArrowSchemaSetType(child, NANOARROW_TYPE_DATE32); break;
      case LP_TIMESTAMP:
        rc = ArrowSchemaSetTypeDateTime(child, NANOARROW_TYPE_TIMESTAMP,
                                        NANOARROW_TIME_UNIT_MICRO, NULL);
        break;
      default: return EINVAL;
    }
    NANOARROW_RETURN_NOT_OK(rc);
    NANOARROW_RETURN_NOT_OK(ArrowSchemaSetName(child, names[c]));
    child->flags = nullable[c] ? ARROW_FLAG_NULLABLE : 0;
  }
  return NANOARROW_OK;
}

/* Copy rows [seq, seq + n) of column c; the range may wrap the ring once. */
static ArrowErrorCode lp_copy_column(const lp_ring* ring, const lp_column* col,
                                     struct ArrowArray* child, int64_t seq, int64_t n) {
  int64_t first = seq & ring->mask;
  int64_t head_len = n < ring->capacity - first ? n : ring->capacity - first;
  int64_t segments[2][2] = {{first, head_len}, {0, n - head_len}};

  int64_t null_count = 0;
  for (int s = 0; s < 2; s++) {
    null_count += lp_count_nulls(col->valid, segments[s][0], segments[s][1]);
  }
  if (null_count > 0) {
    struct ArrowBitmap* validity = ArrowArrayValidityBitmap(child);
    for (int s = 0; s < 2; s++) {
      NANOARROW_RETURN_NOT_OK(
          lp_pack_bits(validity, col->valid + segments[s][0], segments[s][1]));
    }
  }

  if (col->type == LP_BOOL) {
    struct ArrowBitmap values;
    ArrowBitmapInit(&values);
    for (int s = 0; s < 2; s++) {
      ArrowErrorCode rc = lp_pack_bits(&values, col->values + segments[s][0], segments[s][1]);
      if (rc != NANOARROW_OK) {
        ArrowBitmapReset(&values);
        return rc;
      }
    }
    NANOARROW_RETURN_NOT_OK(ArrowArraySetBuffer(child, 1, &values.buffer));
  } else if (col->type == LP_STRING) {
    struct ArrowBuffer* offsets = ArrowArrayBuffer(child, 1);
    struct ArrowBuffer* data = ArrowArrayBuffer(child, 2);
    int64_t total = 0;
    for (int s = 0; s < 2; s++) {
      const int64_t* slot = (const int64_t*)col->values + 2 * segments[s][0];
      for (int64_t i = 0; i < segments[s][1]; i++) total += slot[2 * i + 1];
    }
    if (total > INT32_MAX) return EOVERFLOW;
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(offsets, (n + 1) * (int64_t)sizeof(int32_t)));
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(data, total));
    int32_t* out_offsets = (int32_t*)offsets->data;
    uint8_t* out_data = data->data;
    int32_t offset = 0;
    int64_t k = 0;
    out_offsets[k++] = 0;
    for (int s = 0; s < 2; s++) {
      const int64_t* slot = (const int64_t*)col->values + 2 * segments[s][0];
      for (int64_t i = 0; i < segments[s][1]; i++) {
        int64_t pos = slot[2 * i], len = slot[2 * i + 1];
        if (len > 0) memcpy(out_data + offset, ring->arena + (pos & ring->arena_mask), (size_t)len);
        offset += (int32_t)len;
        out_offsets[k++] = offset;
      }
    }
    offsets->size_bytes = (n + 1) * (int64_t)sizeof(int32_t);
    data->size_bytes = total;
  } else {
    struct ArrowBuffer* values = ArrowArrayBuffer(child, 1);
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(values, n * col->width));
    for (int s = 0; s < 2; s++) {
      ArrowBufferAppendUnsafe(values, col->values + segments[s][0] * col->width,
                              segments[s][1] * col->width);
    }
  }
  child->length = n;
  child->null_count = null_count;
  return NANOARROW_OK;
}

int64_t lp_ring_take(lp_ring* ring, int64_t max_rows, struct ArrowArray* out,
                     struct ArrowError* error) {
  for (;;) {
    /* acquire: every row below `published` is fully written. */
    int64_t first = lp_load_acquire(&ring->read);
    int64_t available = lp_load_acquire(&ring->published) - first;
    int64_t n = available < max_rows ? available : max_rows;
    if (n <= 0) return 0;

    int rc = ArrowArrayInitFromSchema(out, &ring->schema, error);
    if (rc != NANOARROW_OK) return -1;
    for (int c = 0; c < ring->ncolumns && rc == NANOARROW_OK; c++) {
      rc = lp_copy_column(ring, &ring->columns[c], out->children[c], first, n);
    }
    if (rc != NANOARROW_OK) {
      ArrowErrorSet(error, "copying %lld rows out of the ring failed (%d)", (long long)n, rc);
      out->release(out);
      return -1;
    }
    int64_t arena_end = ring->row_arena_end[(first + n - 1) & ring->mask];
    /* Seqlock-style check: a drop_oldest producer moves `read` before it
     * reuses a slot, so if `read` is still `first` nothing we copied was
     * overwritten. The CAS (acq_rel) keeps our copies ordered before it. */
    if (!lp_cas(&ring->read, first, first + n)) {
      out->release(out);
      continue;
    }
    if (ring->arena) lp_fetch_max(&ring->arena_tail, arena_end);
    lp_ring_wake_producers(ring);
    out->length = n;
    out->null_count = 0;
    if (ArrowArrayFinishBuildingDefault(out, error) != NANOARROW_OK) {
      out->release(out);
      return -1;
    }
    return n;
  }
}

/* ---- staged rows → Arrow ----------------------------------------------- */

/* Column c of `nrows` staged rows (row-major: values[r * ncolumns + c]). */
static ArrowErrorCode lp_build_column(const lp_column* col, const lp_value* values, int ncolumns,
                                      int c, int64_t nrows, struct ArrowArray* child) {
  int64_t null_count = 0;
  for (int64_t r = 0; r < nrows; r++) null_count += values[r * ncolumns + c].is_null;
  if (null_count > 0) {
    struct ArrowBitmap* validity = ArrowArrayValidityBitmap(child);
    NANOARROW_RETURN_NOT_OK(ArrowBitmapReserve(validity, nrows));
    for (int64_t r = 0; r < nrows; r++) {
      ArrowBitmapAppendUnsafe(validity, !values[r * ncolumns + c].is_null, 1);
    }
  }
  if (col->type == LP_BOOL) {
    struct ArrowBitmap bits;
    ArrowBitmapInit(&bits);
    ArrowErrorCode rc = ArrowBitmapReserve(&bits, nrows);
    if (rc != NANOARROW_OK) {
      ArrowBitmapReset(&bits);
      return rc;
    }
    for (int64_t r = 0; r < nrows; r++) {
      const lp_value* v = &values[r * ncolumns + c];
      ArrowBitmapAppendUnsafe(&bits, !v->is_null && v->i != 0, 1);
    }
    NANOARROW_RETURN_NOT_OK(ArrowArraySetBuffer(child, 1, &bits.buffer));
  } else if (col->type == LP_STRING) {
    int64_t total = 0;
    for (int64_t r = 0; r < nrows; r++) {
      const lp_value* v = &values[r * ncolumns + c];
      if (!v->is_null) total += v->len;
    }
    if (total > INT32_MAX) return EOVERFLOW;
    struct ArrowBuffer* offsets = ArrowArrayBuffer(child, 1);
    struct ArrowBuffer* data = ArrowArrayBuffer(child, 2);
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(offsets, (nrows + 1) * (int64_t)sizeof(int32_t)));
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(data, total > 0 ? total : 1));
    int32_t* out_offsets = (int32_t*)offsets->data;
    int32_t offset = 0;
    out_offsets[0] = 0;
    for (int64_t r = 0; r < nrows; r++) {
      const lp_value* v = &values[r * ncolumns + c];
      if (!v->is_null && v->len > 0) {
        memcpy(data->data + offset, v->str, (size_t)v->len);
        offset += (int32_t)v->len;
      }
      out_offsets[r + 1] = offset;
    }
    offsets->size_bytes = (nrows + 1) * (int64_t)sizeof(int32_t);
    data->size_bytes = total;
  } else {
    struct ArrowBuffer* buffer = ArrowArrayBuffer(child, 1);
    NANOARROW_RETURN_NOT_OK(ArrowBufferReserve(buffer, nrows * col->width));
    uint8_t* dst = buffer->data;
    for (int64_t r = 0; r < nrows; r++, dst += col->width) {
      const lp_value* v = &values[r * ncolumns + c];
      switch (col->type) {
        case LP_FLOAT64: *(double*)dst = v->is_null ? 0.0 : v->f; break;
        case LP_FLOAT32: *(float*)dst = v->is_null ? 0.0f : (float)v->f; break;
        case LP_INT64: case LP_TIMESTAMP: *(int64_t*)dst = v->is_null ? 0 : v->i; break;
        case LP_INT32: case LP_DATE: *(int32_t*)dst = v->is_null ? 0 : (int32_t)v->i; break;
        case LP_INT16: *(int16_t*)dst = v->is_null ? 0 : (int16_t)v->i; break;
        default: return EINVAL;
      }
    }
    buffer->size_bytes = nrows * col->width;
  }
  child->length = nrows;
  child->null_count = null_count;
  return NANOARROW_OK;
}

int lp_rows_to_array(const lp_ring* ring, const lp_value* values, int64_t nrows,
                     struct ArrowArray* out, struct ArrowError* error) {
  int rc = ArrowArrayInitFromSchema(out, &ring->schema, error);
  if (rc != NANOARROW_OK) return rc;
  for (int c = 0; c < ring->ncolumns && rc == NANOARROW_OK; c++) {
    rc = lp_build_column(&ring->columns[c], values, ring->ncolumns, c, nrows, out->children[c]);
  }
  if (rc != NANOARROW_OK) {
    if (rc == EOVERFLOW) {
      ArrowErrorSet(error, "the batch's strings in one column exceed 2 GiB; split the batch");
    } else {
      ArrowErrorSet(error, "building an Arrow batch of %lld rows failed (%d)", (long long)nrows, rc);
    }
    out->release(out);
    return rc;
  }
  out->length = nrows;
  out->null_count = 0;
  rc = ArrowArrayFinishBuildingDefault(out, error);
  if (rc != NANOARROW_OK) out->release(out);
  return rc;
}
