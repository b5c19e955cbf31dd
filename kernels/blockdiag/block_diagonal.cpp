// A block-diagonal linear map on a CPU, forward and backward, as single passes over the rows (backend "cpp" of
// kernels.blockdiag). At the mLSTM's blocks of 4 channels each output is a 4-term dot product: a batched matmul
// spends its time on layout copies and tiny tiles, where one pass over the rows reads and writes each number once.
//
// x (R rows, row stride x_stride, NB blocks of BI), W (NB, BO, BI). The outputs of a block come in PARTS parts of
// P = BO / PARTS (several maps of one input stacked, e.g. the mLSTM's q and k), each part its own contiguous
// (R, NB P) matrix, part after part:
//   y[o / P][r][n P + o % P] = sum_i W[n, o, i] x[r, n BI + i]
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

struct Layout {  // where output o of block n of row r lives in y (and dy)
    int64_t R, NB, BO, P;
    int64_t at(int64_t r, int64_t n, int64_t o) const { return (o / P) * R * NB * P + r * NB * P + n * P + o % P; }
};

template <typename T>
void forward(const T* x, int64_t x_stride, const T* W, T* y, Layout L, int64_t BI, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < L.R; ++r) {
        for (int64_t n = 0; n < L.NB; ++n) {
            const T* xn = x + r * x_stride + n * BI;
            const T* wn = W + n * L.BO * BI;
            for (int64_t o = 0; o < L.BO; ++o) {
                T sum = 0;
                for (int64_t i = 0; i < BI; ++i) sum += wn[o * BI + i] * xn[i];
                y[L.at(r, n, o)] = sum;
            }
        }
    }
}

// Float blocks of 4 inputs and outputs in parts of a multiple of 4 (the mLSTM's q/k/v) go 16 lanes at a time in
// GCC's portable vector type (one AVX-512 register, two AVX2 ones): lane 4 o + i of a group of 4 outputs holds the
// (o, i) product, and each output sums its 4 lanes.
typedef float f16v __attribute__((vector_size(64)));

inline f16v repeat4(const float* v) {  // (v0, v1, v2, v3) four times
    return f16v{v[0], v[1], v[2], v[3], v[0], v[1], v[2], v[3], v[0], v[1], v[2], v[3], v[0], v[1], v[2], v[3]};
}

inline f16v group_weights(const float* W, const Layout& L, int64_t n, int64_t g) {  // W[n, 4g .. 4g+3, :]
    f16v w;
    std::memcpy(&w, W + (n * L.BO + 4 * g) * 4, sizeof(w));
    return w;
}

// where group g of 4 outputs of row 0, block 0 lives; of row r, block n: + (r NB + n) P
std::vector<int64_t> group_offsets(const Layout& L) {
    std::vector<int64_t> at(L.BO / 4);
    for (int64_t g = 0; g < L.BO / 4; ++g) at[g] = L.at(0, 0, 4 * g);
    return at;
}

void forward_f32_in4(const float* x, int64_t x_stride, const float* W, float* y, Layout L, int threads) {
    const int64_t groups = L.BO / 4;
    const std::vector<int64_t> group_at = group_offsets(L);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < L.R; ++r) {
        for (int64_t n = 0; n < L.NB; ++n) {
            const f16v xs = repeat4(x + r * x_stride + n * 4);
            float* yn = y + (r * L.NB + n) * L.P;
            for (int64_t g = 0; g < groups; ++g) {
                const f16v prod = group_weights(W, L, n, g) * xs;
                float* out = yn + group_at[g];
                for (int o = 0; o < 4; ++o) out[o] = prod[4 * o] + prod[4 * o + 1] + prod[4 * o + 2] + prod[4 * o + 3];
            }
        }
    }
}

// dx (R, NB BI) contiguous = dy W per block; dW (NB, BO, BI) = sum over rows of dy^T x per block (each thread sums its
// own rows, then the partial sums are added in thread order: the same result for the same thread count).
template <typename T>
void backward(const T* x, int64_t x_stride, const T* W, const T* dy, T* dx, T* dW, Layout L, int64_t BI,
              int threads) {
    const int64_t wsize = L.NB * L.BO * BI;
    std::vector<T> partial(static_cast<size_t>(threads) * wsize, T(0));
    int used = 1;
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        used = omp_get_num_threads();
        T* mine = partial.data() + omp_get_thread_num() * wsize;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < L.R; ++r) {
            for (int64_t n = 0; n < L.NB; ++n) {
                const T* xn = x + r * x_stride + n * BI;
                const T* wn = W + n * L.BO * BI;
                T* dwn = mine + n * L.BO * BI;
                T* dxn = dx + r * L.NB * BI + n * BI;
                for (int64_t i = 0; i < BI; ++i) dxn[i] = 0;
                for (int64_t o = 0; o < L.BO; ++o) {
                    const T g = dy[L.at(r, n, o)];
                    for (int64_t i = 0; i < BI; ++i) {
                        dxn[i] += g * wn[o * BI + i];
                        dwn[o * BI + i] += g * xn[i];
                    }
                }
            }
        }
    }
    std::fill(dW, dW + wsize, T(0));
    for (int t = 0; t < used; ++t)
        for (int64_t j = 0; j < wsize; ++j) dW[j] += partial[t * wsize + j];
}

// The backward of forward_f32_in4, in the same 16 lanes; the 4 x 4 outer products of dy and x go to dW.
void backward_f32_in4(const float* x, int64_t x_stride, const float* W, const float* dy, float* dx, float* dW,
                      Layout L, int threads) {
    const int64_t groups = L.BO / 4, wsize = L.NB * L.BO * 4;  // NB x groups 16-lane vectors
    std::vector<f16v> partial(static_cast<size_t>(threads) * L.NB * groups);
    int used = 1;
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        used = omp_get_num_threads();
        f16v* mine = partial.data() + omp_get_thread_num() * L.NB * groups;
        for (int64_t j = 0; j < L.NB * groups; ++j) mine[j] = f16v{};
        const std::vector<int64_t> group_at = group_offsets(L);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < L.R; ++r) {
            for (int64_t n = 0; n < L.NB; ++n) {
                const int64_t row_block = (r * L.NB + n) * L.P;  // at(r, n, o) = at(0, 0, o) + this
                const f16v xs = repeat4(x + r * x_stride + n * 4);
                f16v to_dx{};
                for (int64_t g = 0; g < groups; ++g) {
                    const float* d = dy + group_at[g] + row_block;  // 4 consecutive outputs: P is a multiple of 4
                    const f16v ds = {d[0], d[0], d[0], d[0], d[1], d[1], d[1], d[1],
                                     d[2], d[2], d[2], d[2], d[3], d[3], d[3], d[3]};
                    mine[n * groups + g] += ds * xs;
                    to_dx += ds * group_weights(W, L, n, g);
                }
                float* dxn = dx + r * L.NB * 4 + n * 4;
                for (int i = 0; i < 4; ++i) dxn[i] = to_dx[i] + to_dx[4 + i] + to_dx[8 + i] + to_dx[12 + i];
            }
        }
    }
    std::fill(dW, dW + wsize, 0.0f);
    for (int t = 0; t < used; ++t) {
        const float* part = reinterpret_cast<const float*>(partial.data() + t * L.NB * groups);
        for (int64_t j = 0; j < wsize; ++j) dW[j] += part[j];
    }
}

}  // namespace

extern "C" {
void block_diagonal_forward_f32(const float* x, int64_t x_stride, const float* W, float* y, int64_t R, int64_t NB,
                                int64_t BO, int64_t BI, int64_t parts, int threads) {
    const Layout L{R, NB, BO, BO / parts};
    if (BI == 4 && L.P % 4 == 0)
        forward_f32_in4(x, x_stride, W, y, L, threads);
    else
        forward<float>(x, x_stride, W, y, L, BI, threads);
}

void block_diagonal_forward_f64(const double* x, int64_t x_stride, const double* W, double* y, int64_t R, int64_t NB,
                                int64_t BO, int64_t BI, int64_t parts, int threads) {
    forward<double>(x, x_stride, W, y, Layout{R, NB, BO, BO / parts}, BI, threads);
}

void block_diagonal_backward_f32(const float* x, int64_t x_stride, const float* W, const float* dy, float* dx,
                                 float* dW, int64_t R, int64_t NB, int64_t BO, int64_t BI, int64_t parts,
                                 int threads) {
    const Layout L{R, NB, BO, BO / parts};
    if (BI == 4 && L.P % 4 == 0)
        backward_f32_in4(x, x_stride, W, dy, dx, dW, L, threads);
    else
        backward<float>(x, x_stride, W, dy, dx, dW, L, BI, threads);
}

void block_diagonal_backward_f64(const double* x, int64_t x_stride, const double* W, const double* dy, double* dx,
                                 double* dW, int64_t R, int64_t NB, int64_t BO, int64_t BI, int64_t parts,
                                 int threads) {
    backward<double>(x, x_stride, W, dy, dx, dW, Layout{R, NB, BO, BO / parts}, BI, threads);
}
}
