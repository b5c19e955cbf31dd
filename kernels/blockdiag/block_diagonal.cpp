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

template <typename T, int BI_, int BO_>
void forward(const T* x, int64_t x_stride, const T* W, T* y, Layout L, int64_t BI, int threads) {
    if (BI_ > 0) BI = BI_;
    if (BO_ > 0) L.BO = BO_;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < L.R; ++r) {
        for (int64_t n = 0; n < L.NB; ++n) {
            const T* xn = x + r * x_stride + n * BI;
            const T* wn = W + n * L.BO * BI;
            for (int64_t o = 0; o < L.BO; ++o) {
                T acc = 0;
                for (int64_t i = 0; i < BI; ++i) acc += wn[o * BI + i] * xn[i];
                y[L.at(r, n, o)] = acc;
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

// The same for float blocks of 4 inputs and outputs in parts of a multiple of 4 (the mLSTM's q/k/v), 16 lanes at a
// time in GCC's portable vector type (one AVX-512 register, two AVX2 ones): lane 4 o + i of a group of 4 outputs holds
// the (o, i) product.
typedef float f16v __attribute__((vector_size(64)));

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
#pragma omp for schedule(static)
        for (int64_t r = 0; r < L.R; ++r) {
            for (int64_t n = 0; n < L.NB; ++n) {
                const float* xn = x + r * x_stride + n * 4;
                const f16v xs = {xn[0], xn[1], xn[2], xn[3], xn[0], xn[1], xn[2], xn[3],
                                 xn[0], xn[1], xn[2], xn[3], xn[0], xn[1], xn[2], xn[3]};
                f16v to_dx{};
                for (int64_t g = 0; g < groups; ++g) {
                    const float* d = dy + L.at(r, n, 4 * g);  // 4 consecutive outputs: P is a multiple of 4
                    const f16v ds = {d[0], d[0], d[0], d[0], d[1], d[1], d[1], d[1],
                                     d[2], d[2], d[2], d[2], d[3], d[3], d[3], d[3]};
                    f16v w;
                    std::memcpy(&w, W + (n * L.BO + 4 * g) * 4, sizeof(w));
                    mine[n * groups + g] += ds * xs;
                    to_dx += ds * w;
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
#define BLOCK_DIAGONAL_FORWARD(T, SUFFIX)                                                                           \
    void block_diagonal_forward_##SUFFIX(const T* x, int64_t x_stride, const T* W, T* y, int64_t R, int64_t NB,     \
                                         int64_t BO, int64_t BI, int64_t parts, int threads) {                      \
        const Layout L{R, NB, BO, BO / parts};                                                                      \
        if (BI == 4 && BO == 8)                                                                                     \
            forward<T, 4, 8>(x, x_stride, W, y, L, BI, threads);                                                    \
        else if (BI == 4 && BO == 4)                                                                                \
            forward<T, 4, 4>(x, x_stride, W, y, L, BI, threads);                                                    \
        else                                                                                                        \
            forward<T, 0, 0>(x, x_stride, W, y, L, BI, threads);                                                    \
    }
BLOCK_DIAGONAL_FORWARD(float, f32)
BLOCK_DIAGONAL_FORWARD(double, f64)

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
