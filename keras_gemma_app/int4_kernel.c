/* x @ W.T for float32 activations and 4-bit weights with a scale and a zero per group of inputs and
 * output (torch's int4 format): w[n][k] = (q[n][k] - 8) * scale[g][n] + zero[g][n], g = k / group.
 *
 * Weights are laid out in blocks of 16 outputs: within a block, for each pair of inputs (k, k+1),
 * 16 bytes, output i's q[k] in byte i's low nibble and q[k+1] in its high nibble. A byte widened to
 * a 32-bit lane indexes a 16-entry float table (vpermps reads its low 4 bits) for q - 8; the
 * products are summed in float32 over each group, then scaled:
 *   out[r][n] = sum_g scale[g][n] * sum_k (q[n][k] - 8) * x[r][k] + zero[g][n] * sum_k x[r][k].
 * Rows are taken four at a time, so that a block's weights are widened once for four rows.
 * The scales and zeros are bfloat16, as torch keeps them.
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

/* R rows (1..4) of one block of 16 outputs. sz: per group, 16 scales then 16 zeros (bfloat16).
 * The weights and scales are prefetched PREFETCH bytes ahead: the hardware's own prefetch left the
 * products of weights out of cache ~30% slower than torch's kernel. */
static inline void block_rows(const float *x, int64_t in_features, int R, const uint8_t *wb, const uint16_t *sz,
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
            for (int r = 0; r < R; r++) {
                const float *xr = x + r * in_features + k;
                a[r][0] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xr[0]), a[r][0]);
                a[r][1] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xr[1]), a[r][1]);
                a[r][2] = _mm512_fmadd_ps(w2, _mm512_set1_ps(xr[2]), a[r][2]);
                a[r][3] = _mm512_fmadd_ps(w3, _mm512_set1_ps(xr[3]), a[r][3]);
            }
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
            if (R == 4) block_rows(xr, in_features, 4, wb, szb, sr, groups, group, o, out_stride, table);
            else if (R == 3) block_rows(xr, in_features, 3, wb, szb, sr, groups, group, o, out_stride, table);
            else if (R == 2) block_rows(xr, in_features, 2, wb, szb, sr, groups, group, o, out_stride, table);
            else block_rows(xr, in_features, 1, wb, szb, sr, groups, group, o, out_stride, table);
        }
    }
    if (x_sums != sums_here) free(x_sums);
}
