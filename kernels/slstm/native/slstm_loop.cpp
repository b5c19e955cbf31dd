// The sLSTM recurrence on a CPU as compiled loops over time (backend "cpp"): the equations of ../reference.py,
// the layout and the saved tensors of ../fused.py.
//
// Why: at batch 1 a step of the torch loops is ~25 tiny ops whose dispatch costs far more than their arithmetic
// (83 us per step fwd+bwd at 4 heads of 32). Every (head, batch row) pair is its own chain (R acts inside a head),
// so the chains run in parallel (OpenMP) and each walks through time with nothing but its own numbers.
//
// Layout (row-major): x and raw (S, NH, B, 4, DH), gate order i, f, z, o, bias already in x; act (S, NH, B, 4, DH)
// holds i', f', z = tanh, o = sigmoid; hs, cs, ns (S + 1, NH, B, DH) with the initial state at index 0;
// W (NH, DH, 4 DH) with W[h, d, g DH + e] = R[g, h, e, d]; WT (NH, 4 DH, DH) its transpose per head.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

template <typename T> inline T log_sigmoid(T x) { return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x))); }
template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <typename T>
void forward(const T* x, const T* W, T* raw, T* act, T* hs, T* cs, T* ns, T* m, int64_t S, int64_t NH, int64_t B,
             int64_t DH, int igate_sigmoid, int threads) {
    const int64_t G = 4 * DH, chains = NH * B;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t chain = 0; chain < chains; ++chain) {
        const int64_t head = chain / B;
        const T* w = W + head * DH * G;
        T* mc = m + chain * DH;  // this chain's stabilizer, updated in place (m0 on entry, m_S on exit)
        for (int64_t t = 0; t < S; ++t) {
            const int64_t row = t * chains + chain;  // (t, head, b) in (S, NH, B)
            const T* h_prev = hs + row * DH;
            const T* c_prev = cs + row * DH;
            const T* n_prev = ns + row * DH;
            T* r = raw + row * G;
            T* a = act + row * G;
            std::copy(x + row * G, x + (row + 1) * G, r);
            for (int64_t d = 0; d < DH; ++d) {  // r += h_prev W[head]: rows of W are contiguous
                const T hd = h_prev[d];
                const T* wd = w + d * G;
                for (int64_t e = 0; e < G; ++e) r[e] += hd * wd[e];
            }
            T* h_new = hs + (row + chains) * DH;
            T* c_new = cs + (row + chains) * DH;
            T* n_new = ns + (row + chains) * DH;
            for (int64_t e = 0; e < DH; ++e) {
                const T i_log = igate_sigmoid ? log_sigmoid(r[e]) : r[e];
                const T log_f_m = log_sigmoid(r[DH + e]) + mc[e];
                // m_new = max(log f + m, i~): one of i', f' is exp(0) = 1, so one exp per element (f' = 0 at m = -inf)
                const bool f_max = log_f_m >= i_log;
                const T m_new = f_max ? log_f_m : i_log;
                const T i_w = f_max ? std::exp(i_log - log_f_m) : T(1), f_w = f_max ? T(1) : std::exp(log_f_m - i_log);
                const T z = std::tanh(r[2 * DH + e]), o = sigmoid(r[3 * DH + e]);
                a[e] = i_w, a[DH + e] = f_w, a[2 * DH + e] = z, a[3 * DH + e] = o;
                c_new[e] = f_w * c_prev[e] + i_w * z;
                n_new[e] = f_w * n_prev[e] + i_w;
                h_new[e] = c_new[e] / n_new[e] * o;
                mc[e] = m_new;
            }
        }
    }
}

// d_raw (S, NH, B, 4, DH) out; d_out (S, NH, B, DH); dh, dc, dn (NH, B, DH): on entry the gradients of the final
// state, on exit those of the initial state. clip < 0: no clip of the gradient that reaches h_{t-1} through R.
template <typename T>
void backward(const T* WT, const T* raw, const T* act, const T* cs, const T* ns, const T* d_out, T* d_raw, T* dh,
              T* dc, T* dn, int64_t S, int64_t NH, int64_t B, int64_t DH, int igate_sigmoid, double clip,
              int threads) {
    const int64_t G = 4 * DH, chains = NH * B;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t chain = 0; chain < chains; ++chain) {
        const int64_t head = chain / B;
        const T* wt = WT + head * G * DH;
        T* dhc = dh + chain * DH;
        T* dcc = dc + chain * DH;
        T* dnc = dn + chain * DH;
        for (int64_t e = 0; e < DH; ++e) dhc[e] += d_out[((S - 1) * chains + chain) * DH + e];
        for (int64_t t = S - 1; t >= 0; --t) {
            const int64_t row = t * chains + chain;
            const T* r = raw + row * G;
            const T* a = act + row * G;
            const T* c_prev = cs + row * DH;
            const T* n_prev = ns + row * DH;
            const T* c_t = cs + (row + chains) * DH;
            const T* n_t = ns + (row + chains) * DH;
            T* g = d_raw + row * G;
            for (int64_t e = 0; e < DH; ++e) {
                const T i_w = a[e], f_w = a[DH + e], z = a[2 * DH + e], o = a[3 * DH + e];
                const T inv_n = T(1) / n_t[e];
                const T to_dc = o * inv_n;                       // h = o c / n
                T dc_e = dcc[e] + dhc[e] * to_dc;
                T dn_e = dnc[e] - dhc[e] * to_dc * c_t[e] * inv_n;
                const T d_i_log = igate_sigmoid ? sigmoid(-r[e]) : T(1);  // d log sigmoid(i~) / d i~
                const T d_log_f = f_w * sigmoid(-r[DH + e]);            // d f' / d f~
                g[e] = (dc_e * z + dn_e) * i_w * d_i_log;
                g[DH + e] = (dc_e * c_prev[e] + dn_e * n_prev[e]) * d_log_f;
                g[2 * DH + e] = dc_e * i_w * (T(1) - z * z);
                g[3 * DH + e] = dhc[e] * c_t[e] * inv_n * o * (T(1) - o);
                dcc[e] = dc_e * f_w;
                dnc[e] = dn_e * f_w;
            }
            // dh_{t-1} = R^T d_raw (+ the output's own gradient at t - 1); rows of WT are contiguous
            std::fill(dhc, dhc + DH, T(0));
            for (int64_t e = 0; e < G; ++e) {
                const T ge = g[e];
                const T* we = wt + e * DH;
                for (int64_t d = 0; d < DH; ++d) dhc[d] += ge * we[d];
            }
            if (clip >= 0)
                for (int64_t d = 0; d < DH; ++d) dhc[d] = std::min(std::max(dhc[d], T(-clip)), T(clip));
            if (t > 0)
                for (int64_t d = 0; d < DH; ++d) dhc[d] += d_out[(row - chains) * DH + d];
        }
    }
}

}  // namespace

extern "C" {
#define SLSTM_ENTRY_POINTS(T, SUFFIX)                                                                               \
    void slstm_forward_##SUFFIX(const T* x, const T* W, T* raw, T* act, T* hs, T* cs, T* ns, T* m, int64_t S,        \
                                int64_t NH, int64_t B, int64_t DH, int igate_sigmoid, int threads) {                \
        forward<T>(x, W, raw, act, hs, cs, ns, m, S, NH, B, DH, igate_sigmoid, threads);                            \
    }                                                                                                               \
    void slstm_backward_##SUFFIX(const T* WT, const T* raw, const T* act, const T* cs, const T* ns, const T* d_out, \
                                 T* d_raw, T* dh, T* dc, T* dn, int64_t S, int64_t NH, int64_t B, int64_t DH,       \
                                 int igate_sigmoid, double clip, int threads) {                                      \
        backward<T>(WT, raw, act, cs, ns, d_out, d_raw, dh, dc, dn, S, NH, B, DH, igate_sigmoid, clip, threads);    \
    }
SLSTM_ENTRY_POINTS(float, f32)
SLSTM_ENTRY_POINTS(double, f64)
}
