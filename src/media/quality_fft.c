/* quality_fft.c - the radix-2 FFT behind the quality measures; see quality.h. */
#include <math.h>
#include <stdlib.h>

#include "quality.h"

bool pl_quality_fft(double *re, double *im, size_t n, bool inverse)
{
    if (n < 2 || (n & (n - 1)) != 0) return n == 1;
    /* Twiddles computed directly (not by recurrence) so that a million-point
     * transform keeps its precision. */
    size_t half = n / 2;
    double *wr = malloc(half * sizeof *wr), *wi = malloc(half * sizeof *wi);
    if (!wr || !wi) {
        free(wr);
        free(wi);
        return false;
    }
    double sign = inverse ? 1.0 : -1.0;
    for (size_t k = 0; k < half; k++) {
        double a = 2.0 * M_PI * (double)k / (double)n;
        wr[k] = cos(a);
        wi[k] = sign * sin(a);
    }
    /* Bit-reversal permutation. */
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j |= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        size_t step = n / len, h = len / 2;
        for (size_t i = 0; i < n; i += len) {
            for (size_t k = 0; k < h; k++) {
                double c = wr[k * step], s = wi[k * step];
                size_t a = i + k, b = a + h;
                double xr = re[b] * c - im[b] * s;
                double xi = re[b] * s + im[b] * c;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
    }
    free(wr);
    free(wi);
    return true;
}
