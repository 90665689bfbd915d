/* Evaluation ops (issue 27), as cpu_eval.c defines them: the kNN classifier's
 * norms, scalings, neighbour heaps and votes, and the linear probe's hit
 * counters.
 *
 * Everything is deterministic without float atomics: norms use one block per
 * row and a fixed reduction tree; the k best per row come from an exact radix
 * select whose only atomics are integer histogram counts, then an in-order
 * compaction and a sort; votes add each class's neighbours in heap order, as
 * the CPU does; hit counters are integer sums of one block. */
#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#include <limits.h>
#include <math.h>
#include <stdint.h>

namespace {

constexpr int ROW_THREADS = 256;
constexpr int TOPK_THREADS = 512;
/* Up to this k the selected keys are sorted in shared memory (16 KiB). */
constexpr int TOPK_SHARED_K = 2048;
constexpr int VOTE_THREADS = 256;
constexpr int HITS_THREADS = 1024;
constexpr int NO_CLASS = INT_MAX;   /* "no candidate yet" in an argmax */

/* (v, c) beats (bv, bc): a larger value, or an equal one at a lower class; any
 * candidate beats NO_CLASS. A strict total order, so the argmax does not
 * depend on the reduction's shape. */
template <typename T> __device__ bool beats(T v, int c, T bv, int bc)
{
    if (c == NO_CLASS)
        return false;
    return bc == NO_CLASS || v > bv || (v == bv && c < bc);
}

template <typename T> __device__ void warp_best(T *v, int *c)
{
    for (int o = 16; o > 0; o >>= 1) {
        T ov = __shfl_down_sync(FULL_MASK, *v, o);
        int oc = __shfl_down_sync(FULL_MASK, *c, o);
        if (beats(ov, oc, *v, *c)) {
            *v = ov;
            *c = oc;
        }
    }
}

/* ---- norms and scalings ---- */

__global__ void knn_inverse_norms_kernel(float *inv, const float *x, int64_t rows, int dim)
{
    __shared__ double sh[33];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * dim;
        double ss = 0.0;
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            ss += (double)xr[j] * xr[j];
        ss = block_sum(ss, sh);
        if (threadIdx.x == 0)
            inv[r] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    }
}

__global__ void knn_scale_rows_kernel(float *y, const float *x, const float *inv, int64_t total, int dim)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        y[e] = x[e] * inv[e / dim];
}

__global__ void knn_scale_cols_kernel(float *s, const float *inv, int64_t total, int64_t cols)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        s[e] *= inv[e % cols];
}

/* ---- top k ----
 * The CPU's order ranks (sim, index) by similarity, then by lower index; as a
 * 64-bit key (monotone bits of the similarity above the complemented index)
 * it is a strict total order and the k best are the k largest keys. A radix
 * select over the similarity bits finds the k-th key's similarity T and how
 * many of the elements equal to T are needed; an in-order compaction then
 * takes everything above T and the needed elements equal to T with the lowest
 * indices: exactly the CPU's set. */

/* Monotone in the float order, with -0 and +0 mapped together because the CPU
 * compares them equal (so their tie goes to the lower index). */
__device__ uint32_t sim_bits(float s)
{
    uint32_t b = __float_as_uint(s == 0.0f ? 0.0f : s);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Never 0 for a real element (~index has its top bit set), so 0 pads. */
__device__ unsigned long long rank_key(uint32_t bits, int64_t j)
{
    return ((unsigned long long)bits << 32) | (unsigned long long)(~(uint32_t)j);
}

/* How many threads before this one (in thread order) have flag set, and the
 * block's total: a ballot per warp and the warp counts in order. */
__device__ int block_count_before(bool flag, int *warp_counts, int *total)
{
    unsigned ballot = __ballot_sync(FULL_MASK, flag);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0)
        warp_counts[w] = __popc(ballot);
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        int c = warp_counts[i];
        before += i < w ? c : 0;
        all += c;
    }
    __syncthreads();
    *total = all;
    return before + __popc(ballot & ((1u << lane) - 1u));
}

/* cpu_eval.c's order and sift_down, for the (rare) k too large for shared memory. */
__device__ bool ranks_below(float sa, int32_t ia, float sb, int32_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

__device__ void sift_down(float *hs, int32_t *hi, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_below(hs[l], hi[l], hs[m], hi[m]))
            m = l;
        if (r < n && ranks_below(hs[r], hi[r], hs[m], hi[m]))
            m = r;
        if (m == i)
            return;
        float ts = hs[i];
        hs[i] = hs[m];
        hs[m] = ts;
        int32_t ti = hi[i];
        hi[i] = hi[m];
        hi[m] = ti;
        i = m;
    }
}

__global__ void __launch_bounds__(TOPK_THREADS)
    knn_top_k_kernel(float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n, int k)
{
    __shared__ unsigned hist[256];
    __shared__ unsigned long long keys[TOPK_SHARED_K];
    __shared__ int warp_counts[32];
    __shared__ uint32_t s_prefix;
    __shared__ int s_need;
    const int tid = threadIdx.x, lane = tid & 31;
    const bool in_shared = k <= TOPK_SHARED_K;
    int padded = 1;
    while (in_shared && padded < k)
        padded <<= 1;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *row = sims + (int64_t)r * n;
        float *out_s = top_sim + (int64_t)r * k;
        int32_t *out_i = top_idx + (int64_t)r * k;

        /* Radix select, 8 bits a pass from the top: prefix holds the decided
         * bits of T, need how many elements with that prefix are still to be
         * taken (those with a larger prefix are all in). */
        uint32_t prefix = 0, mask = 0;
        int need = k;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += blockDim.x)
                hist[b] = 0;
            __syncthreads();
            /* Whole-block strides, so every lane reaches the warp intrinsics. */
            for (int64_t j0 = 0; j0 < n; j0 += blockDim.x) {
                int64_t j = j0 + tid;
                unsigned bin = 256;   /* not counted */
                if (j < n) {
                    uint32_t bits = sim_bits(row[j]);
                    if ((bits & mask) == prefix)
                        bin = (bits >> shift) & 255u;
                }
                /* Similarities crowd into few bins: one atomic per distinct bin per warp. */
                unsigned peers = __match_any_sync(FULL_MASK, bin);
                if (bin < 256 && lane == __ffs(peers) - 1)
                    atomicAdd(&hist[bin], (unsigned)__popc(peers));
            }
            __syncthreads();
            if (tid == 0) {
                int above = 0, digit = 255;
                for (; digit > 0; digit--) {
                    if (above + (int)hist[digit] >= need)
                        break;
                    above += (int)hist[digit];
                }
                s_prefix = prefix | ((uint32_t)digit << shift);
                s_need = need - above;
            }
            __syncthreads();
            prefix = s_prefix;
            need = s_need;
            mask |= 255u << shift;
        }

        /* Compaction in index order; output slots come from ordered counts, so
         * they are the same every run. */
        if (in_shared)
            for (int p = tid; p < padded; p += blockDim.x)
                keys[p] = 0ull;
        int taken = 0, equal_seen = 0;
        for (int64_t j0 = 0; j0 < n && taken < k; j0 += blockDim.x) {
            int64_t j = j0 + tid;
            bool valid = j < n;
            uint32_t bits = valid ? sim_bits(row[j]) : 0u;
            bool eq = valid && bits == prefix, gt = valid && bits > prefix;
            int eq_total, take_total;
            int eq_rank = equal_seen + block_count_before(eq, warp_counts, &eq_total);
            bool take = gt || (eq && eq_rank < need);
            int pos = taken + block_count_before(take, warp_counts, &take_total);
            if (take) {
                if (in_shared) {
                    keys[pos] = rank_key(bits, j);
                } else {
                    out_s[pos] = row[j];
                    out_i[pos] = (int32_t)j;
                }
            }
            equal_seen += eq_total;
            taken += take_total;
        }
        __syncthreads();

        if (in_shared) {
            /* Bitonic sort, ascending: the pads (0) first, then the k keys
             * worst first, which is a valid min-heap with the worst at the root. */
            for (int size = 2; size <= padded; size <<= 1)
                for (int stride = size >> 1; stride > 0; stride >>= 1) {
                    for (int t = tid; t < padded / 2; t += blockDim.x) {
                        int lo = 2 * stride * (t / stride) + t % stride, hi = lo + stride;
                        bool up = (lo & size) == 0;
                        unsigned long long a = keys[lo], b = keys[hi];
                        if ((a > b) == up) {
                            keys[lo] = b;
                            keys[hi] = a;
                        }
                    }
                    __syncthreads();
                }
            for (int p = tid; p < k; p += blockDim.x) {
                int32_t j = (int32_t)~(uint32_t)keys[padded - k + p];
                out_i[p] = j;
                out_s[p] = row[j];   /* the stored value itself (keeps a -0) */
            }
        } else if (tid == 0) {
            for (int i = k / 2 - 1; i >= 0; i--)
                sift_down(out_s, out_i, k, i);
        }
        __syncthreads();
    }
}

/* ---- votes ---- */

__global__ void knn_vote_kernel(int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                                const int32_t *train_labels, int rows, int k, float temperature, int classes,
                                int nbest)
{
    __shared__ double s_vote[VOTE_THREADS];
    __shared__ int32_t s_label[VOTE_THREADS];
    __shared__ double s_v[33];
    __shared__ int s_c[33];
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, nw = blockDim.x >> 5;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        double *sc = scores + (int64_t)r * classes;
        const float *hs = top_sim + (int64_t)r * k;
        const int32_t *hi = top_idx + (int64_t)r * k;
        int32_t *br = best + (int64_t)r * nbest;
        /* Class c belongs to thread c % blockDim throughout, so each score is
         * one thread's running sum over the neighbours in heap order: the
         * CPU's additions in the CPU's order. */
        for (int c = tid; c < classes; c += blockDim.x)
            sc[c] = 0.0;
        for (int base = 0; base < k; base += blockDim.x) {
            int i = base + tid;
            if (i < k) {
                s_vote[tid] = exp((double)hs[i] / temperature);
                s_label[tid] = train_labels[hi[i]];
            }
            __syncthreads();
            int count = k - base < (int)blockDim.x ? k - base : (int)blockDim.x;
            for (int c = tid; c < classes; c += blockDim.x) {
                double acc = sc[c];
                for (int t = 0; t < count; t++)
                    if (s_label[t] == c)
                        acc += s_vote[t];
                sc[c] = acc;
            }
            __syncthreads();
        }
        /* The ranking: nbest rounds of "first largest among the classes not
         * yet taken"; br[0..q) was written by thread 0 before a barrier. */
        for (int q = 0; q < nbest; q++) {
            double bv = 0.0;
            int bc = NO_CLASS;
            for (int c = tid; c < classes; c += blockDim.x) {
                bool taken = false;
                for (int p = 0; p < q && !taken; p++)
                    taken = br[p] == c;
                if (!taken && beats(sc[c], c, bv, bc)) {
                    bv = sc[c];
                    bc = c;
                }
            }
            warp_best(&bv, &bc);
            if (lane == 0) {
                s_v[w] = bv;
                s_c[w] = bc;
            }
            __syncthreads();
            if (w == 0) {
                bv = lane < nw ? s_v[lane] : 0.0;
                bc = lane < nw ? s_c[lane] : NO_CLASS;
                warp_best(&bv, &bc);
                if (lane == 0)
                    br[q] = bc == NO_CLASS ? -1 : bc;
            }
            __syncthreads();
        }
    }
}

/* ---- probe counters: one block, a warp per row ---- */

__global__ void __launch_bounds__(HITS_THREADS)
    argmax_hits_kernel(int64_t *hits, const float *logits, const int32_t *labels, int rows, int classes)
{
    __shared__ long long sh[33];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    long long h = 0;
    for (int r = warp; r < rows; r += nw) {
        const float *row = logits + (int64_t)r * classes;
        /* The CPU's running "first largest" starts at class 0 and moves only
         * on a larger value: NaN elsewhere is passed over, NaN at 0 keeps 0. */
        float bv = -INFINITY;
        int bc = NO_CLASS;
        for (int c = lane; c < classes; c += 32) {
            float v = row[c];
            if (!isnan(v) && beats(v, c, bv, bc)) {
                bv = v;
                bc = c;
            }
        }
        warp_best(&bv, &bc);
        if (lane == 0) {
            int arg = classes < 1 || isnan(row[0]) || bc == NO_CLASS ? 0 : bc;
            h += arg == labels[r];
        }
    }
    h = block_sum(h, sh);
    if (threadIdx.x == 0)
        hits[0] += h;
}

__global__ void __launch_bounds__(HITS_THREADS)
    class_rank_hits_kernel(int64_t *hits, const float *logits, const int32_t *labels, int rows, int classes)
{
    __shared__ long long sh1[33], sh5[33];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    long long h1 = 0, h5 = 0;
    for (int r = warp; r < rows; r += nw) {
        const float *row = logits + (int64_t)r * classes;
        int label = labels[r];
        /* An out-of-range label (the CPU reads out of bounds) never counts. */
        if (label < 0 || label >= classes)
            continue;
        float v = row[label];
        int rank = 0;
        for (int c = lane; c < classes; c += 32)
            rank += row[c] > v || (row[c] == v && c < label);
        rank = warp_sum(rank);
        if (lane == 0) {
            h1 += rank == 0;
            h5 += rank < 5;
        }
    }
    h1 = block_sum(h1, sh1);
    h5 = block_sum(h5, sh5);
    if (threadIdx.x == 0) {
        hits[0] += h1;
        hits[1] += h5;
    }
}

} /* namespace */

void cuda_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    knn_inverse_norms_kernel<<<row_grid(rows), ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(inv, x, rows, dim);
    cuda_check_launch(be, "knn_inverse_norms");
}

void cuda_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim)
{
    if (!cuda_enter(be))
        return;
    int64_t total = rows * dim;
    if (total <= 0)
        return;
    knn_scale_rows_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(y, x, inv, total, dim);
    cuda_check_launch(be, "knn_scale_rows");
}

void cuda_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * cols;
    if (total <= 0)
        return;
    knn_scale_cols_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(s, inv, total, cols);
    cuda_check_launch(be, "knn_scale_cols");
}

void cuda_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n, int k)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    if (k < 1 || k > n || n > INT32_MAX) {
        hallu_backend_fail(be, HALLU_ERR_INVALID_ARG, "knn_top_k: k=%d of n=%lld (need 1 <= k <= n < 2^31)", k,
                           (long long)n);
        return;
    }
    knn_top_k_kernel<<<row_grid(rows), TOPK_THREADS, 0, cuda_impl_of(be)->stream>>>(top_sim, top_idx, sims, rows, n,
                                                                                    k);
    cuda_check_launch(be, "knn_top_k");
}

void cuda_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                   const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0 || classes <= 0)
        return;
    knn_vote_kernel<<<row_grid(rows), VOTE_THREADS, 0, cuda_impl_of(be)->stream>>>(
        best, scores, top_sim, top_idx, train_labels, rows, k, temperature, classes, nbest);
    cuda_check_launch(be, "knn_vote");
}

void cuda_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                      int classes)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    argmax_hits_kernel<<<1, HITS_THREADS, 0, cuda_impl_of(be)->stream>>>(hits, logits, labels, rows, classes);
    cuda_check_launch(be, "argmax_hits");
}

void cuda_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                          int classes)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    class_rank_hits_kernel<<<1, HITS_THREADS, 0, cuda_impl_of(be)->stream>>>(hits, logits, labels, rows, classes);
    cuda_check_launch(be, "class_rank_hits");
}
