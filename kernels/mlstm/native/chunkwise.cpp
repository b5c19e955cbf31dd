// The chunkwise mLSTM on a CPU, forward and backward (backend "chunkwise--cpp" of kernels.mlstm).
//
// The equations, names and stabilizers are those of ../fused.py ("chunkwise--torch", which it is tested against):
// per chunk of L positions t, s with F the inclusive cumsum of log f inside the chunk and (C0, n0, m0) the state at
// the chunk start,
//     D[t,s] = exp(F_t - F_s + i_s - m_t) (s <= t),  P = (q k^T) * D,  decay_t = exp(F_t + m0 - m_t),
//     num = P v + decay (q C0),  den = P 1 + decay (q n0),  h = num / (max(|den|, exp(-m_t)) + eps),
//     C1 = carry C0 + add sum_s w_s k_s v_s^T,  n1 = carry n0 + add sum_s w_s k_s.
// Why it exists: the torch form runs these as batched ops over all chunks, so every intermediate (the L x L
// matrices, the per-chunk states) goes through memory and the small matmuls run at a fraction of the machine's
// speed. Here one OpenMP thread takes one (batch, head) chain from its first chunk to its last, every intermediate
// lives in that thread's buffers (a few L x L and L x D matrices, in cache), and the products are register-tiled
// loops in GCC's portable vector type. The backward recomputes the chunk-start states (one product per chunk) and
// the intra-chunk quantities instead of reading them back from memory.
//
// Sums over a vector's elements run as `omp simd` reductions (lanes summed in a fixed order: the same result for any
// thread count, not the sequential order of the torch form; float64 results agree to ~1e-15).
//
// Layout: q, k (B, NH, S, DK), v and h (B, NH, S, DV) with unit stride in the last dim and any strides in the others
// (given per tensor as (b, h, s)): the mLSTM layer's heads are strided views of (B, S, NH, D) tensors and are read
// and written in place. Gates, states and their gradients are contiguous. q is scaled by `scale` inside.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

// Subnormal numbers are flushed to zero while a thread runs the kernel (restored after): decays of long chunks reach
// below float's normal range (exp(-87)), where each operation on a subnormal costs ~100 cycles on x86 CPUs; the
// flushed values are below 1e-38 of the entries they are summed with.
struct FlushSubnormals {
#if defined(__SSE__)
    unsigned int saved = _mm_getcsr();
    FlushSubnormals() { _mm_setcsr(saved | 0x8040); }  // flush-to-zero (bit 15), denormals-are-zero (bit 6)
    ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
};

template <typename T>
struct Vec {
    typedef T type __attribute__((vector_size(64)));  // one AVX-512 register (two AVX2 ones)
    static constexpr int lanes = 64 / sizeof(T);
};

template <typename T>
inline typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

template <typename T>
inline void store(T* p, typename Vec<T>::type v) {
    std::memcpy(p, &v, sizeof(v));
}

// exp in the vector type, within 1 ulp of std::exp (Cody-Waite reduction to r in [-ln2/2, ln2/2], Taylor terms to
// r^7 / r^13 for float / double, the power of two from the exponent bits); results below the normal range are 0 (as
// the flushed subnormals), above the largest finite value inf; NaN stays NaN.
template <typename T>
inline typename Vec<T>::type vexp(typename Vec<T>::type x) {
    using V = typename Vec<T>::type;
    using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    typedef I IV __attribute__((vector_size(64)));
    constexpr bool f = sizeof(T) == 4;
    const T lo = f ? T(-88.0) : T(-709.0), hi = f ? T(88.7) : T(709.7);  // 2^n stays a normal number in between
    const T shift = f ? T(12582912.0) : T(6755399441055744.0);               // 1.5 2^mantissa: rounds to an integer
    const T ln2_hi = f ? T(0.693359375) : T(6.93147180369123816490e-01);
    const T ln2_lo = f ? T(-2.12194440e-4) : T(1.90821492927058770002e-10);
    const V xc = x < lo ? V{} + lo : (x > hi ? V{} + hi : x);
    const V n = (xc * T(1.4426950408889634) + shift) - shift;
    const V r = (xc - n * ln2_hi) - n * ln2_lo;
    V p = V{} + T(1);
    for (int k = f ? 7 : 13; k >= 1; --k) p = p * r * (T(1) / T(k)) + T(1);  // 1 + r (1 + r/2 (1 + r/3 (...)))
    const IV bits = (__builtin_convertvector(n, IV) + I(f ? 127 : 1023)) << (f ? 23 : 52);
    const V y = p * (V)bits;
    return x < lo ? V{} : (x > hi ? V{} + std::numeric_limits<T>::infinity() : y);
}

// y[j] = exp(y[j] - shift) for j < n, whole vectors in vexp, the rest in std::exp.
template <typename T>
void exp_shifted(T* y, int64_t n, T shift) {
    constexpr int W = Vec<T>::lanes;
    int64_t j = 0;
    for (; j + W <= n; j += W) store(y + j, vexp<T>(load(y + j) - shift));
    for (; j < n; ++j) y[j] = std::exp(y[j] - shift);
}

// C (M x N, row stride ldc) = A B, or += with `add`. A (M x K): element (i, k) at A[i * a_rs + k * a_cs], so a
// transposed operand costs nothing (its elements are broadcast one at a time); B (K x N): rows of unit stride,
// row stride ldb. R rows x NV vectors of C stay in registers over the whole K loop.
template <typename T, int R, int NV>
inline void tile(int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, T* C, int64_t ldc,
                 bool add) {
    using V = typename Vec<T>::type;
    constexpr int W = Vec<T>::lanes;
    V c[R][NV];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < NV; ++j) c[r][j] = add ? load(C + r * ldc + j * W) : V{};
    for (int64_t k = 0; k < K; ++k) {
        V b[NV];
        for (int j = 0; j < NV; ++j) b[j] = load(B + k * ldb + j * W);
        for (int r = 0; r < R; ++r) {
            const T a = A[r * a_rs + k * a_cs];
            for (int j = 0; j < NV; ++j) c[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < NV; ++j) store(C + r * ldc + j * W, c[r][j]);
}

template <typename T, int R>
void row_block(int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, T* C,
               int64_t ldc, bool add) {
    constexpr int W = Vec<T>::lanes;
    int64_t j = 0;
    for (; j + 4 * W <= N; j += 4 * W) tile<T, R, 4>(K, A, a_rs, a_cs, B + j, ldb, C + j, ldc, add);
    for (; j + W <= N; j += W) tile<T, R, 1>(K, A, a_rs, a_cs, B + j, ldb, C + j, ldc, add);
    for (; j < N; ++j) {  // columns left over from whole vectors
        for (int r = 0; r < R; ++r) {
            T sum = add ? C[r * ldc + j] : T(0);
            for (int64_t k = 0; k < K; ++k) sum += A[r * a_rs + k * a_cs] * B[k * ldb + j];
            C[r * ldc + j] = sum;
        }
    }
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, T* C,
          int64_t ldc, bool add) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) row_block<T, 4>(N, K, A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, add);
    for (; i < M; ++i) row_block<T, 1>(N, K, A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, add);
}

template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst) {  // dst (cols x rows) contiguous
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * lds + c];
}

struct Strides {  // element strides of a (B, NH, S, D) tensor; unit stride in D
    int64_t b, h, s;
    int64_t chain(int64_t b_, int64_t h_) const { return b_ * b + h_ * h; }
};

struct Shape {
    int64_t B, NH, S, DK, DV, L;
    int64_t chunks() const { return (S + L - 1) / L; }
};

template <typename T>
struct Work {  // one thread's buffers, for chunks of at most L positions
    std::vector<T> F, w, mt, decay, qn, den, Z, logd, D, P, kT, qs, num, kw;  // forward (and recomputed backward)
    std::vector<T> dnum, dnn, vT, C0T, dloc, dlocT, g, tmp, dcum, col, row, dC0, dn0, dC, dn, states;
    Work(const Shape& s, bool backward) {
        const int64_t L = s.L, DK = s.DK, DV = s.DV;
        for (auto* v : {&F, &w, &mt, &decay, &qn, &den, &Z}) v->resize(L);
        for (auto* v : {&logd, &D, &P}) v->resize(L * L);
        for (auto* v : {&kT, &qs, &kw}) v->resize(L * DK);
        num.resize(L * DV);
        if (!backward) return;
        for (auto* v : {&dnn, &dcum, &col, &row}) v->resize(L);
        for (auto* v : {&dnum, &vT}) v->resize(L * DV);
        for (auto* v : {&g, &tmp}) v->resize(L * DK);
        for (auto* v : {&C0T, &dloc, &dlocT, &dC0, &dC}) v->resize(DK * DV);
        dn0.resize(DK), dn.resize(DK);
        states.resize((s.chunks() + 1) * (DK * DV + DK + 1));
    }
};

// What one chunk's gates give: its length, total log decay and the stabilizers of its end state.
template <typename T>
struct ChunkGates {
    int64_t len;
    T total, m_local, m_next, carry, add;
};

// The chunk's end-state weights w (len) and scalars from log f and i (len each) and the start stabilizer m0.
// Suffix sums are accumulated from the chunk end (never a difference of prefix sums, as in ../chunkwise.py).
template <typename T>
ChunkGates<T> end_weights(const T* lf, const T* ig, int64_t len, T m0, T* w) {
    ChunkGates<T> c;
    c.len = len;
    T after = 0, total = 0;
    c.m_local = -std::numeric_limits<T>::infinity();
    for (int64_t s = len - 1; s >= 0; --s) {
        w[s] = after + ig[s];  // log weight of position s in the chunk's end state
        c.m_local = std::max(c.m_local, w[s]);
        after += lf[s];
    }
#pragma omp simd reduction(+ : total)
    for (int64_t s = 0; s < len; ++s) total += lf[s];
    c.total = total;
    exp_shifted(w, len, c.m_local);
    c.m_next = std::max(total + m0, c.m_local);
    c.carry = std::exp(total + m0 - c.m_next);
    c.add = std::exp(c.m_local - c.m_next);
    return c;
}

// State update of one chunk: (C1, n1) = carry (C0, n0) + add sum_s w_s k_s (v_s, 1). kw: len x DK scratch.
template <typename T>
void next_state(const ChunkGates<T>& c, const T* k, int64_t k_s, const T* v, int64_t v_s, const T* w, const T* C0,
                const T* n0, T* C1, T* n1, T* kw, int64_t DK, int64_t DV) {
    for (int64_t s = 0; s < c.len; ++s)
        for (int64_t d = 0; d < DK; ++d) kw[s * DK + d] = k[s * k_s + d] * w[s] * c.add;
    for (int64_t j = 0; j < DK * DV; ++j) C1[j] = c.carry * C0[j];
    for (int64_t d = 0; d < DK; ++d) n1[d] = c.carry * n0[d];
    for (int64_t s = 0; s < c.len; ++s)
        for (int64_t d = 0; d < DK; ++d) n1[d] += kw[s * DK + d];
    gemm<T>(DK, DV, c.len, kw, 1, DK, v, v_s, C1, DV, true);
}

// Intra-chunk quantities from the gates: F, the running max m_t, D (len x len, row stride L, zero above the
// diagonal) and decay; each column of log D is its own running sum (../reference.py, segment_sums).
template <typename T>
void intra_weights(const T* lf, const T* ig, int64_t len, int64_t L, T m0, Work<T>& b) {
    T cum = 0;
    for (int64_t t = 0; t < len; ++t) {
        cum += lf[t];
        b.F[t] = cum;
    }
    T* seg = b.logd.data();  // seg[j] = sum_{j < s <= t} log f_s for the current row t
    for (int64_t t = 0; t < len; ++t) {
        for (int64_t j = 0; j < t; ++j) seg[j] += lf[t];
        seg[t] = 0;
        T* Drow = b.D.data() + t * L;
        T m = b.F[t] + m0;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j <= t; ++j) {
            Drow[j] = seg[j] + ig[j];
            m = std::max(m, Drow[j]);
        }
        b.mt[t] = m;
        exp_shifted(Drow, t + 1, m);
        for (int64_t j = t + 1; j < len; ++j) Drow[j] = 0;
        b.decay[t] = std::exp(b.F[t] + m0 - m);
    }
}

// P = (q k^T) * D, q C0 into num (scaled by decay), q.n0, den and Z; qs = scale q (len x DK) is kept.
template <typename T>
void scores(const T* q, int64_t q_s, const T* k, int64_t k_s, const T* C0, const T* n0, int64_t len, const Shape& s,
            T scale, T eps, Work<T>& b) {
    const int64_t L = s.L, DK = s.DK, DV = s.DV;
    for (int64_t t = 0; t < len; ++t)
        for (int64_t d = 0; d < DK; ++d) b.qs[t * DK + d] = q[t * q_s + d] * scale;
    transpose(k, len, DK, k_s, b.kT.data());
    gemm<T>(len, len, DK, b.qs.data(), DK, 1, b.kT.data(), len, b.P.data(), L, false);
    gemm<T>(len, DV, DK, b.qs.data(), DK, 1, C0, DV, b.num.data(), DV, false);
    for (int64_t t = 0; t < len; ++t) {
        T qn = 0, rowsum = 0;
#pragma omp simd reduction(+ : qn)
        for (int64_t d = 0; d < DK; ++d) qn += b.qs[t * DK + d] * n0[d];
        T* Prow = b.P.data() + t * L;
        const T* Drow = b.D.data() + t * L;
#pragma omp simd reduction(+ : rowsum)
        for (int64_t j = 0; j < len; ++j) {
            Prow[j] *= Drow[j];
            rowsum += Prow[j];
        }
        b.qn[t] = qn;
        b.den[t] = rowsum + b.decay[t] * qn;
        b.Z[t] = std::max(std::abs(b.den[t]), std::exp(-b.mt[t])) + eps;
    }
}

template <typename T>
struct Args {
    const T *q, *k, *v, *ig, *lf, *C_init, *n_init, *m_init;
    Strides qs, ks, vs, hs;
    Shape shape;
    T scale, eps;
};

template <typename T>
void forward(const Args<T>& a, T* h, T* C_last, T* n_last, T* m_last, int threads) {
    const Shape& s = a.shape;
    const int64_t DK = s.DK, DV = s.DV, L = s.L;
#pragma omp parallel num_threads(threads)
    {
        const FlushSubnormals flush;
        Work<T> b(s, false);
        std::vector<T> state(2 * (DK * DV + DK));
#pragma omp for schedule(dynamic, 1)
        for (int64_t chain = 0; chain < s.B * s.NH; ++chain) {
            const int64_t bi = chain / s.NH, hi = chain % s.NH;
            const T *q = a.q + a.qs.chain(bi, hi), *k = a.k + a.ks.chain(bi, hi), *v = a.v + a.vs.chain(bi, hi);
            const T *ig = a.ig + chain * s.S, *lf = a.lf + chain * s.S;
            T* hc = h + a.hs.chain(bi, hi);
            T *C0 = state.data(), *n0 = C0 + DK * DV, *C1 = n0 + DK, *n1 = C1 + DK * DV;
            std::copy_n(a.C_init + chain * DK * DV, DK * DV, C0);
            std::copy_n(a.n_init + chain * DK, DK, n0);
            T m0 = a.m_init[chain];
            for (int64_t start = 0; start < s.S; start += L) {
                const int64_t len = std::min(L, s.S - start);
                const T *qj = q + start * a.qs.s, *kj = k + start * a.ks.s, *vj = v + start * a.vs.s;
                intra_weights(lf + start, ig + start, len, L, m0, b);
                scores(qj, a.qs.s, kj, a.ks.s, C0, n0, len, s, a.scale, a.eps, b);
                for (int64_t t = 0; t < len; ++t)
                    for (int64_t d = 0; d < DV; ++d) b.num[t * DV + d] *= b.decay[t];
                gemm<T>(len, DV, len, b.P.data(), L, 1, vj, a.vs.s, b.num.data(), DV, true);  // + P v
                for (int64_t t = 0; t < len; ++t) {
                    T* out = hc + (start + t) * a.hs.s;
                    for (int64_t d = 0; d < DV; ++d) out[d] = b.num[t * DV + d] / b.Z[t];  // (as the torch form)
                }
                const ChunkGates<T> c = end_weights(lf + start, ig + start, len, m0, b.w.data());
                next_state(c, kj, a.ks.s, vj, a.vs.s, b.w.data(), C0, n0, C1, n1, b.kw.data(), DK, DV);
                std::swap(C0, C1);
                std::swap(n0, n1);
                m0 = c.m_next;
            }
            std::copy_n(C0, DK * DV, C_last + chain * DK * DV);
            std::copy_n(n0, DK, n_last + chain * DK);
            m_last[chain] = m0;
        }
    }
}

template <typename T>
struct Grads {
    const T *h, *dh, *dC_last, *dn_last;
    Strides dhs, dqs, dks, dvs;
    T *dq, *dk, *dv, *di, *dlf, *dC_init, *dn_init, *dm_init;
};

// One chain's backward: the chunk-start states again (forward scan), then the chunks from the last to the first,
// carrying d(C, n) of the state after the current chunk. Names as in ../fused.py's backward.
template <typename T>
void backward_chain(const Args<T>& a, const Grads<T>& gr, int64_t chain, Work<T>& b) {
    const Shape& s = a.shape;
    const int64_t DK = s.DK, DV = s.DV, L = s.L, NC = s.chunks(), size = DK * DV + DK + 1;
    const int64_t bi = chain / s.NH, hi = chain % s.NH;
    const T *q = a.q + a.qs.chain(bi, hi), *k = a.k + a.ks.chain(bi, hi), *v = a.v + a.vs.chain(bi, hi);
    const T *ig = a.ig + chain * s.S, *lf = a.lf + chain * s.S;
    const T *h = gr.h + a.hs.chain(bi, hi), *dh = gr.dh + gr.dhs.chain(bi, hi);
    T *dq = gr.dq + gr.dqs.chain(bi, hi), *dk = gr.dk + gr.dks.chain(bi, hi), *dv = gr.dv + gr.dvs.chain(bi, hi);
    T *di = gr.di + chain * s.S, *dlf = gr.dlf + chain * s.S;
    auto C_at = [&](int64_t j) { return b.states.data() + j * size; };  // [C (DK x DV), n (DK), m] at boundary j
    std::copy_n(a.C_init + chain * DK * DV, DK * DV, C_at(0));
    std::copy_n(a.n_init + chain * DK, DK, C_at(0) + DK * DV);
    C_at(0)[DK * DV + DK] = a.m_init[chain];
    for (int64_t j = 0; j < NC; ++j) {
        const int64_t start = j * L, len = std::min(L, s.S - start);
        T *C0 = C_at(j), *C1 = C_at(j + 1);
        const ChunkGates<T> c = end_weights(lf + start, ig + start, len, C0[DK * DV + DK], b.w.data());
        next_state(c, k + start * a.ks.s, a.ks.s, v + start * a.vs.s, a.vs.s, b.w.data(), C0, C0 + DK * DV, C1,
                   C1 + DK * DV, b.kw.data(), DK, DV);
        C1[DK * DV + DK] = c.m_next;
    }
    T *dC = b.dC.data(), *dn = b.dn.data();  // d of the state after the current chunk
    std::copy_n(gr.dC_last + chain * DK * DV, DK * DV, dC);
    std::copy_n(gr.dn_last + chain * DK, DK, dn);
    for (int64_t j = NC - 1; j >= 0; --j) {
        const int64_t start = j * L, len = std::min(L, s.S - start);
        const T *C0 = C_at(j), *n0 = C0 + DK * DV, m0 = C0[DK * DV + DK];
        const T *qj = q + start * a.qs.s, *kj = k + start * a.ks.s, *vj = v + start * a.vs.s;
        const T *hj = h + start * a.hs.s, *dhj = dh + start * gr.dhs.s;
        intra_weights(lf + start, ig + start, len, L, m0, b);
        scores(qj, a.qs.s, kj, a.ks.s, C0, n0, len, s, a.scale, a.eps, b);  // num = q C0 (before decay)
        const ChunkGates<T> c = end_weights(lf + start, ig + start, len, m0, b.w.data());
        // through h = num / Z, Z = max(|den|, exp(-m)) + eps: dnum (len x DV) and dnn, the denominator's
        for (int64_t t = 0; t < len; ++t) {
            T dZ = 0;
#pragma omp simd reduction(+ : dZ)
            for (int64_t d = 0; d < DV; ++d) {
                const T x = dhj[t * gr.dhs.s + d] / b.Z[t];
                b.dnum[t * DV + d] = x;
                dZ -= x * hj[t * a.hs.s + d];
            }
            const T den = b.den[t];
            b.dnn[t] = std::abs(den) > std::exp(-b.mt[t]) ? dZ * (den > 0 ? T(1) : den < 0 ? T(-1) : T(0)) : T(0);
        }
        // intra-chunk part: dP = dnum [v, 1]^T; d log D = dP * P (row and column sums), dS = dP * D
        transpose(vj, len, DV, a.vs.s, b.vT.data());
        T* dP = b.logd.data();
        gemm<T>(len, len, DV, b.dnum.data(), DV, 1, b.vT.data(), len, dP, L, false);
        std::fill_n(b.col.data(), len, T(0));
        for (int64_t t = 0; t < len; ++t) {
            T* dProw = dP + t * L;
            const T *Prow = b.P.data() + t * L, *Drow = b.D.data() + t * L;
            T row = 0;
#pragma omp simd reduction(+ : row)
            for (int64_t u = 0; u < len; ++u) {
                const T x = dProw[u] + b.dnn[t];
                const T dlogd = x * Prow[u];
                row += dlogd;
                b.col[u] += dlogd;
                dProw[u] = x * Drow[u];  // dS
            }
            b.row[t] = row;
        }
        // dq, dk, dv are computed in place in the outputs' rows (row strides gr.dqs.s ...)
        const T* dS = dP;
        T *dqj = dq + start * gr.dqs.s, *dkj = dk + start * gr.dks.s, *dvj = dv + start * gr.dvs.s;
        gemm<T>(len, DV, len, b.P.data(), 1, L, b.dnum.data(), DV, dvj, gr.dvs.s, false);  // P^T dnum
        gemm<T>(len, DK, len, dS, L, 1, kj, a.ks.s, dqj, gr.dqs.s, false);                // dS k
        gemm<T>(len, DK, len, dS, 1, L, b.qs.data(), DK, dkj, gr.dks.s, false);           // dS^T q
        // through the chunk-start state: decay (q [C0, n0]); num holds q C0 here
        transpose(C0, DK, DV, DV, b.C0T.data());
        gemm<T>(len, DK, DV, b.dnum.data(), DV, 1, b.C0T.data(), DK, b.tmp.data(), DK, false);  // dnum C0^T
        T* qd = b.kw.data();  // decay q, len x DK
        for (int64_t t = 0; t < len; ++t) {
            T from_start = 0;
#pragma omp simd reduction(+ : from_start)
            for (int64_t d = 0; d < DV; ++d) from_start += b.dnum[t * DV + d] * b.num[t * DV + d];
            from_start += b.dnn[t] * b.qn[t];
            b.dcum[t] = b.row[t] - b.col[t] + from_start * b.decay[t];  // log D[t, s] = F_t - F_s + i_s
            T* dqt = dqj + t * gr.dqs.s;
            for (int64_t d = 0; d < DK; ++d) {  // q was scaled inside: d q = scale d qs
                dqt[d] = (dqt[d] + b.decay[t] * (b.tmp[t * DK + d] + b.dnn[t] * n0[d])) * a.scale;
                qd[t * DK + d] = b.qs[t * DK + d] * b.decay[t];
            }
        }
        gemm<T>(DK, DV, len, qd, 1, DK, b.dnum.data(), DV, b.dC0.data(), DV, false);  // (decay q)^T dnum
        std::fill_n(b.dn0.data(), DK, T(0));
        for (int64_t t = 0; t < len; ++t)
            for (int64_t d = 0; d < DK; ++d) b.dn0[d] += qd[t * DK + d] * b.dnn[t];
        // through the end state: C1 = carry C0 + add sum_s w_s k_s [v_s, 1]^T
        T dtotal = 0;
#pragma omp simd reduction(+ : dtotal)
        for (int64_t x = 0; x < DK * DV; ++x) dtotal += dC[x] * C0[x];
#pragma omp simd reduction(+ : dtotal)
        for (int64_t d = 0; d < DK; ++d) dtotal += dn[d] * n0[d];
        dtotal *= c.carry;
        for (int64_t x = 0; x < DK * DV; ++x) b.dloc[x] = dC[x] * c.add;  // d of the chunk's own C, DK x DV
        transpose(b.dloc.data(), DK, DV, DV, b.dlocT.data());
        gemm<T>(len, DK, DV, vj, a.vs.s, 1, b.dlocT.data(), DK, b.g.data(), DK, false);  // v dlocal^T
        for (int64_t t = 0; t < len; ++t)
            for (int64_t d = 0; d < DK; ++d) b.kw[t * DK + d] = kj[t * a.ks.s + d] * b.w[t];
        gemm<T>(len, DV, DK, b.kw.data(), DK, 1, b.dloc.data(), DV, dvj, gr.dvs.s, true);  // + w k dlocal
        T dto_end_sum = 0;
        for (int64_t t = 0; t < len; ++t) {
            T dto_end = 0;
            T* dkt = dkj + t * gr.dks.s;
#pragma omp simd reduction(+ : dto_end)
            for (int64_t d = 0; d < DK; ++d) {
                const T gx = b.g[t * DK + d] + dn[d] * c.add;  // d[C, n] [v_s, 1]
                dto_end += kj[t * a.ks.s + d] * gx;
                dkt[d] += b.w[t] * gx;
            }
            dto_end *= b.w[t];
            b.dcum[t] -= dto_end;
            di[start + t] = b.col[t] + dto_end;
            dto_end_sum += dto_end;
        }
        b.dcum[len - 1] += dtotal + dto_end_sum;  // total = F_{len-1}
        T suffix = 0;
        for (int64_t t = len - 1; t >= 0; --t) {
            suffix += b.dcum[t];
            dlf[start + t] = suffix;
        }
        // d[C, n] at this chunk's start
        for (int64_t x = 0; x < DK * DV; ++x) dC[x] = b.dC0[x] + c.carry * dC[x];
        for (int64_t d = 0; d < DK; ++d) dn[d] = b.dn0[d] + c.carry * dn[d];
    }
    // the initial state means (C, n) exp(m): dm = sum dC C + sum dn n
    T dm = 0;
    const T* C_init = C_at(0);
#pragma omp simd reduction(+ : dm)
    for (int64_t x = 0; x < DK * DV + DK; ++x) dm += (x < DK * DV ? dC[x] : dn[x - DK * DV]) * C_init[x];
    std::copy_n(dC, DK * DV, gr.dC_init + chain * DK * DV);
    std::copy_n(dn, DK, gr.dn_init + chain * DK);
    gr.dm_init[chain] = dm;
}

template <typename T>
void backward(const Args<T>& a, const Grads<T>& g, int threads) {
#pragma omp parallel num_threads(threads)
    {
        const FlushSubnormals flush;
        Work<T> b(a.shape, true);
#pragma omp for schedule(dynamic, 1)
        for (int64_t chain = 0; chain < a.shape.B * a.shape.NH; ++chain) backward_chain(a, g, chain, b);
    }
}

template <typename T>
Args<T> make_args(const T* q, const T* k, const T* v, const T* ig, const T* lf, const T* C_init, const T* n_init,
                  const T* m_init, const int64_t* strides, const int64_t* shape, double scale, double eps) {
    // strides: (b, h, s) of q, k, v, h; shape: B, NH, S, DK, DV, L
    Args<T> a{q, k, v, ig, lf, C_init, n_init, m_init,
              {strides[0], strides[1], strides[2]}, {strides[3], strides[4], strides[5]},
              {strides[6], strides[7], strides[8]}, {strides[9], strides[10], strides[11]},
              {shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]}, T(scale), T(eps)};
    return a;
}

}  // namespace

#define MLSTM_ENTRIES(T, SUFFIX)                                                                                    \
    extern "C" void mlstm_chunkwise_forward_##SUFFIX(const T* q, const T* k, const T* v, const T* ig, const T* lf,  \
                                                     const T* C_init, const T* n_init, const T* m_init,            \
                                                     const int64_t* strides, const int64_t* shape, double scale,   \
                                                     double eps, T* h, T* C_last, T* n_last, T* m_last,            \
                                                     int threads) {                                                \
        forward(make_args<T>(q, k, v, ig, lf, C_init, n_init, m_init, strides, shape, scale, eps), h, C_last,     \
                n_last, m_last, threads);                                                                          \
    }                                                                                                              \
    /* grad_strides: (b, h, s) of dh, dq, dk, dv */                                                                \
    extern "C" void mlstm_chunkwise_backward_##SUFFIX(                                                             \
        const T* q, const T* k, const T* v, const T* ig, const T* lf, const T* C_init, const T* n_init,            \
        const T* m_init, const int64_t* strides, const int64_t* shape, double scale, double eps, const T* h,       \
        const T* dh, const T* dC_last, const T* dn_last, const int64_t* grad_strides, T* dq, T* dk, T* dv, T* di,  \
        T* dlf, T* dC_init, T* dn_init, T* dm_init, int threads) {                                                 \
        const int64_t* gs = grad_strides;                                                                          \
        Grads<T> g{h,  dh,  dC_last, dn_last, {gs[0], gs[1], gs[2]}, {gs[3], gs[4], gs[5]}, {gs[6], gs[7], gs[8]}, \
                   {gs[9], gs[10], gs[11]}, dq, dk, dv, di, dlf, dC_init, dn_init, dm_init};                       \
        backward(make_args<T>(q, k, v, ig, lf, C_init, n_init, m_init, strides, shape, scale, eps), g, threads);  \
    }

MLSTM_ENTRIES(float, f32)
MLSTM_ENTRIES(double, f64)
