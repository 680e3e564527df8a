/* Weight-only products for float32 activations: x @ W.T with W held as 4-bit or 8-bit integers.
 *
 * Weights are laid out in blocks of 16 outputs, read front to back and prefetched PREFETCH bytes
 * ahead (the hardware's own prefetch left products of weights out of cache ~30% slower than
 * torch's kernels). Rows are taken four at a time, so that a block's weights are widened once for
 * four rows. Sums are float32.
 *
 * int4 (torch's format): w[n][k] = (q[n][k] - 8) * scale[g][n] + zero[g][n], g = k / group. Within a
 * block, for each pair of inputs (k, k+1), 16 bytes: output i's q[k] in byte i's low nibble and
 * q[k+1] in its high nibble. A byte widened to a 32-bit lane indexes a 16-entry float table
 * (vpermps reads its low 4 bits) for q - 8; the products are summed over each group, then scaled:
 *   out[r][n] = sum_g scale[g][n] * sum_k (q[n][k] - 8) * x[r][k] + zero[g][n] * sum_k x[r][k].
 * The scales and zeros are bfloat16, as torch keeps them.
 *
 * int8: w[n][k] = q[n][k] * scale[n]. Within a block, for each input, the 16 outputs' bytes.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#define LANES 16
#define MAX_ROWS 4
#define PREFETCH 8192

/* 16 bfloat16 values as float32: the 16 bits above 16 zero bits. */
static inline __m512 bfloat16_lanes(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* One row's four sums (inputs k..k+3, four chains of additions in flight) += w_j * x[k + j]. */
static inline void add_products(__m512 a[4], __m512 w0, __m512 w1, __m512 w2, __m512 w3, const float *x) {
    a[0] = _mm512_fmadd_ps(w0, _mm512_set1_ps(x[0]), a[0]);
    a[1] = _mm512_fmadd_ps(w1, _mm512_set1_ps(x[1]), a[1]);
    a[2] = _mm512_fmadd_ps(w2, _mm512_set1_ps(x[2]), a[2]);
    a[3] = _mm512_fmadd_ps(w3, _mm512_set1_ps(x[3]), a[3]);
}

/* int4: R rows (1..4) of one block of 16 outputs. sz: per group, 16 scales then 16 zeros. */
static inline void int4_block_rows(const float *x, int64_t in_features, int R, const uint8_t *wb, const uint16_t *sz,
                              const float *x_sums, int64_t groups, int64_t group, float *out,
                              int64_t out_stride, __m512 table) {
    __m512 total[MAX_ROWS];
    for (int r = 0; r < R; r++) total[r] = _mm512_setzero_ps();
    const int64_t pairs = group / 2;
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t *wg = wb + g * pairs * LANES;
        _mm_prefetch((const char *)(sz + g * 2 * LANES) + PREFETCH, _MM_HINT_T0);
                /* Four sums per row (inputs k, k+1, k+2, k+3): four chains of additions in flight. */
        __m512 a[MAX_ROWS][4];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 4; j++) a[r][j] = _mm512_setzero_ps();
        for (int64_t p = 0; p < pairs; p += 2) {
            _mm_prefetch((const char *)(wg + p * LANES + PREFETCH), _MM_HINT_T0);
            const __m512i b0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wg + p * LANES)));
            const __m512i b1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wg + p * LANES + LANES)));
            const __m512 w0 = _mm512_permutexvar_ps(b0, table);
            const __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(b0, 4), table);
            const __m512 w2 = _mm512_permutexvar_ps(b1, table);
            const __m512 w3 = _mm512_permutexvar_ps(_mm512_srli_epi32(b1, 4), table);
            const int64_t k = g * group + 2 * p;
            for (int r = 0; r < R; r++) add_products(a[r], w0, w1, w2, w3, x + r * in_features + k);
        }
        const __m512 scale = bfloat16_lanes(sz + g * 2 * LANES);
        const __m512 zero = bfloat16_lanes(sz + g * 2 * LANES + LANES);
        for (int r = 0; r < R; r++) {
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_add_ps(a[r][2], a[r][3]));
            total[r] = _mm512_fmadd_ps(sum, scale, total[r]);
            total[r] = _mm512_fmadd_ps(zero, _mm512_set1_ps(x_sums[r * groups + g]), total[r]);
        }
    }
    for (int r = 0; r < R; r++) _mm512_storeu_ps(out + r * out_stride, total[r]);
}

/* x: (rows, in_features) float32; w: blocks * 16 * in_features / 2 bytes; sz: (blocks, groups, 2, 16)
 * bfloat16; out: (rows, out_stride) float32, blocks * 16 columns written. group: a multiple of 4 that
 * divides in_features. */
void int4_rows_product(const float *x, int64_t rows, int64_t in_features, const uint8_t *w, const uint16_t *sz,
                       int64_t groups, int64_t group, int64_t blocks, float *out, int64_t out_stride,
                       int threads) {
    const int64_t block_bytes = LANES * in_features / 2;
    float sums_here[256];
    float *x_sums = rows * groups <= 256 ? sums_here : malloc(rows * groups * sizeof(float));
    if (x_sums == NULL) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xg = x + r * in_features + g * group;
            __m512 lanes = _mm512_setzero_ps();
            int64_t k = 0;
            for (; k + LANES <= group; k += LANES) lanes = _mm512_add_ps(lanes, _mm512_loadu_ps(xg + k));
            float s = _mm512_reduce_add_ps(lanes);
            for (; k < group; k++) s += xg[k];
            x_sums[r * groups + g] = s;
        }
    const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *wb = w + b * block_bytes;
        const uint16_t *szb = sz + b * groups * 2 * LANES;
        for (int64_t r = 0; r < rows; r += MAX_ROWS) {
            const int64_t left = rows - r;
            const int R = left < MAX_ROWS ? (int)left : MAX_ROWS;
            const float *xr = x + r * in_features;
            const float *sr = x_sums + r * groups;
            float *o = out + r * out_stride + b * LANES;
            /* Separate calls, so that each is compiled for its number of rows. */
            if (R == 4) int4_block_rows(xr, in_features, 4, wb, szb, sr, groups, group, o, out_stride, table);
            else if (R == 3) int4_block_rows(xr, in_features, 3, wb, szb, sr, groups, group, o, out_stride, table);
            else if (R == 2) int4_block_rows(xr, in_features, 2, wb, szb, sr, groups, group, o, out_stride, table);
            else int4_block_rows(xr, in_features, 1, wb, szb, sr, groups, group, o, out_stride, table);
        }
    }
    if (x_sums != sums_here) free(x_sums);
}

/* int8: R rows (1..4) of one block of 16 outputs. */
static inline void int8_block_rows(const float *x, int64_t in_features, int R, const int8_t *wb, __m512 scale,
                                   float *out, int64_t out_stride) {
    __m512 a[MAX_ROWS][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) a[r][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= in_features; k += 4) {
        _mm_prefetch((const char *)(wb + k * LANES + PREFETCH), _MM_HINT_T0);
        const int8_t *wk = wb + k * LANES;
        const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)wk)));
        const __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wk + 16))));
        const __m512 w2 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wk + 32))));
        const __m512 w3 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wk + 48))));
        for (int r = 0; r < R; r++) add_products(a[r], w0, w1, w2, w3, x + r * in_features + k);
    }
    for (; k < in_features; k++) {
        const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wb + k * LANES))));
        for (int r = 0; r < R; r++) a[r][0] = _mm512_fmadd_ps(w0, _mm512_set1_ps(x[r * in_features + k]), a[r][0]);
    }
    for (int r = 0; r < R; r++) {
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_add_ps(a[r][2], a[r][3]));
        _mm512_storeu_ps(out + r * out_stride, _mm512_mul_ps(sum, scale));
    }
}

/* x: (rows, in_features) float32; w: blocks * 16 * in_features bytes; scale: blocks * 16 float32;
 * out: (rows, out_stride) float32, blocks * 16 columns written. */
void int8_weights_product(const float *x, int64_t rows, int64_t in_features, const int8_t *w, const float *scale,
                          int64_t blocks, float *out, int64_t out_stride, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) {
        const int8_t *wb = w + b * LANES * in_features;
        const __m512 s = _mm512_loadu_ps(scale + b * LANES);
        for (int64_t r = 0; r < rows; r += MAX_ROWS) {
            const int64_t left = rows - r;
            const int R = left < MAX_ROWS ? (int)left : MAX_ROWS;
            const float *xr = x + r * in_features;
            float *o = out + r * out_stride + b * LANES;
            /* Separate calls, so that each is compiled for its number of rows. */
            if (R == 4) int8_block_rows(xr, in_features, 4, wb, s, o, out_stride);
            else if (R == 3) int8_block_rows(xr, in_features, 3, wb, s, o, out_stride);
            else if (R == 2) int8_block_rows(xr, in_features, 2, wb, s, o, out_stride);
            else int8_block_rows(xr, in_features, 1, wb, s, o, out_stride);
        }
    }
}
