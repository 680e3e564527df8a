/* x @ W.T for 8-bit activations (unsigned, one range for all rows) and 8-bit weights (signed, one
 * scale per output), with the 512-bit VNNI dot-product instruction (vpdpbusd).
 *
 * Weights are laid out in blocks of 16 outputs: within a block, for each group of 4 inputs, the 16
 * outputs' 4 bytes side by side (64 bytes, one register). One vpdpbusd then adds 4 products to each
 * of the 16 outputs' sums, and a block is read once, front to back, whatever the number of rows.
 *
 * out[r][n] = (acc - x_zero * row_sums[n]) * (x_scale * w_scale[n]), with
 * acc = sum_i x[r][i] * w[n][i] in 32-bit integers: the values of torch's x86 engine
 * (quantized.linear_dynamic) for the same quantized input.
 */
#include <immintrin.h>
#include <stdint.h>

#define LANES 16

void int8_rows_product(const uint8_t *x, int64_t rows, int64_t groups, const int8_t *w,
                       const int32_t *row_sums, const float *w_scale, int64_t blocks,
                       int32_t x_zero, float x_scale, float *out, int64_t out_stride, int threads) {
    const int64_t block_bytes = LANES * 4 * groups;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) {
        const int8_t *wb = w + b * block_bytes;
        const __m512i zero_sums = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(row_sums + b * LANES)),
                                                     _mm512_set1_epi32(x_zero));
        const __m512 scales = _mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_loadu_ps(w_scale + b * LANES));
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *xr = x + r * groups * 4;
            __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
            int64_t g = 0;
            for (; g + 1 < groups; g += 2) {
                const __m512i w0 = _mm512_loadu_si512((const void *)(wb + g * 64));
                const __m512i w1 = _mm512_loadu_si512((const void *)(wb + g * 64 + 64));
                a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(*(const int32_t *)(xr + 4 * g)), w0);
                a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(*(const int32_t *)(xr + 4 * g + 4)), w1);
            }
            if (g < groups) {
                const __m512i w0 = _mm512_loadu_si512((const void *)(wb + g * 64));
                a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(*(const int32_t *)(xr + 4 * g)), w0);
            }
            const __m512i acc = _mm512_sub_epi32(_mm512_add_epi32(a0, a1), zero_sums);
            _mm512_storeu_ps(out + r * out_stride + b * LANES, _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scales));
        }
    }
}
