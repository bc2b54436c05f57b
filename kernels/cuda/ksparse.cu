// CUDA k-sparse coding: per row of x [m, n] keep the k largest values (ties to the lower column),
// and its backward. The result is exactly the CPU reference's (kernels/cpu/ksparse.cpp): both
// rank the same order-preserving keys (ops.hpp: −0.0 == +0.0, NaN above +∞), there is no
// floating-point arithmetic, and y receives x's bits unchanged.
//
// Forward, ksparse_forward_kernel<kThreads, kStaged>: one block per row (kThreads from 32 for
// short rows up to 512), four steps.
//   1. kStaged: the row's bits are copied into shared memory and every later pass reads them from
//      there. A row longer than kStageMaxBytes (or than the device allows) is re-read from global
//      memory on each pass instead; after the first pass those reads mostly hit L2.
//   2. Radix select of the k-th largest key, 8 bits a pass from the most significant digit: a
//      256-bin shared histogram of the current digit of the keys that match the digits chosen so
//      far (warp-aggregated with __match_any_sync, so a row of equal values costs one shared atomic
//      per warp rather than 32 serialised ones), then warp 0 scans the bins from the top and picks
//      the one holding the need-th largest remaining key. need drops by the keys in higher bins.
//      The select stops early when the picked bin holds exactly `need` keys (all of them are kept),
//      so it takes 1 to 4 passes; it ends with a threshold prefix P of the key's top 32 − shift
//      bits and the number `need` of keys with prefix P to keep (the other k − need have a larger
//      prefix).
//   3. One ordered pass over the row in tiles of kThreads columns: gt = (key >> shift) > P,
//      eq = (key >> shift) == P. A block exclusive scan (cub::BlockScan) of the packed pair
//      (gt << 32 | eq), plus the carry of earlier tiles, gives each column gt_before and eq_before;
//      the column is kept iff gt, or eq and eq_before < need (the lowest-column ties), and a kept
//      column's slot in the ascending index list is gt_before + min(eq_before, need).
//   4. The same pass writes y (x's bits where kept, +0 elsewhere, coalesced) and index[slot] = c.
//      Tiles after the k-th kept column skip the scan and only write zeros.
// Cost per row: 2 + (1..4) sweeps of n keys (the load, the select passes, the final pass), each
// O(n / kThreads) per thread plus a few block barriers; global traffic is 4n bytes read (staged),
// 4n written for y and 4k for index, the memory floor of the op. What bounds it: for rows of
// hundreds to thousands of columns the sweeps' instruction issue (key mapping, match, shared
// atomics) and the barrier latency between passes, not DRAM; a single short row is pure latency
// (~10 dependent barriers), so many rows are needed to fill the device. Not measured yet.
// NaN-free or not, the key order is total, so the result is always defined (ops.hpp).
//
// Backward: dx = 0 (cudaMemsetAsync over [m, n]) then a grid-stride scatter dx[r, index] = dy[r,
// index] over the m·k kept entries; with acc_dx only the scatter, adding. The indices of a row
// are distinct, so no two threads touch the same element. Bandwidth-bound: 4mn bytes of zeros
// plus 12 bytes per kept entry.
#include <cub/block/block_scan.cuh>

#include <atomic>
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

// Rows up to this many bytes are staged in shared memory (n <= 24576): at most two such blocks
// share an H100 multiprocessor's 228 KiB, and a shorter row leaves room for more.
constexpr long long kStageMaxBytes = 96 * 1024;

// The order-preserving key of a float's bits (ops.hpp's KSparse comment; the same mapping as
// rank_key in kernels/cpu/ksparse.cpp): larger key = larger value, ±0 one key, every NaN the top.
__device__ __forceinline__ std::uint32_t rank_key(std::uint32_t b) {
  const std::uint32_t mag = b & 0x7fffffffu;
  if (mag > 0x7f800000u) return 0xffffffffu;
  if (mag == 0) return 0x80000000u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

template <int kThreads, bool kStaged>
__global__ void __launch_bounds__(kThreads)
    ksparse_forward_kernel(const float* __restrict__ x, float* __restrict__ y, std::int32_t* __restrict__ index,
                           int n_cols, int k) {
  static_assert(kThreads >= 32 && kThreads <= 1024 && kThreads % 32 == 0, "whole warps");
  using Scan = cub::BlockScan<unsigned long long, kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ unsigned hist[256];
  __shared__ std::uint32_t s_prefix;
  __shared__ unsigned s_need;
  __shared__ bool s_done;
  extern __shared__ std::uint32_t stage[];  // n words when kStaged

  // n < 2^31, so an unsigned column index plus kThreads never wraps.
  const unsigned n = static_cast<unsigned>(n_cols);
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * n_cols;
  const std::uint32_t* xb = reinterpret_cast<const std::uint32_t*>(x) + row0;
  const unsigned tid = threadIdx.x;
  const unsigned lane = tid & 31u;

  if constexpr (kStaged) {
    for (unsigned c = tid; c < n; c += kThreads) stage[c] = xb[c];
    __syncthreads();
  }
  auto bits_at = [&](unsigned c) -> std::uint32_t {
    if constexpr (kStaged) return stage[c];
    else return __ldg(xb + c);
  };

  // ---- radix select: the prefix of the k-th largest key, 8 bits a pass ----
  std::uint32_t prefix = 0;  // the digits chosen so far: the top 32 − shift bits of the threshold
  unsigned need = static_cast<unsigned>(k);  // keys still to keep among those matching prefix
  int shift = 24;
  for (;; shift -= 8) {
    for (unsigned i = tid; i < 256; i += kThreads) hist[i] = 0;
    __syncthreads();
    // Every thread runs the same number of iterations (the bound is uniform), so whole warps reach
    // __match_any_sync; a thread past the row end carries the no-digit value 256.
    for (unsigned base = 0; base < n; base += kThreads) {
      const unsigned c = base + tid;
      unsigned digit = 256;
      if (c < n) {
        const std::uint32_t key = rank_key(bits_at(c));
        // On the first pass every key matches the empty prefix (and a shift by 32 is undefined).
        if (shift == 24 || (key >> (shift + 8)) == prefix) digit = (key >> shift) & 0xffu;
      }
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit < 256 && lane == static_cast<unsigned>(__ffs(peers) - 1)) atomicAdd(&hist[digit], __popc(peers));
    }
    __syncthreads();
    if (tid < 32) {
      // Lane l holds bins 255 − 8l down to 248 − 8l; an inclusive scan over the lanes counts the
      // keys at or above each lane's lowest bin. Exactly one lane has excl < need <= incl, since
      // the matching keys number at least need >= 1.
      unsigned cnt[8];
      unsigned local = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        cnt[j] = hist[255 - 8 * lane - j];
        local += cnt[j];
      }
      unsigned incl = local;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= static_cast<unsigned>(o)) incl += v;
      }
      const unsigned excl = incl - local;
      if (excl < need && need <= incl) {
        unsigned above = excl;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (above + cnt[j] >= need) {
            s_prefix = (prefix << 8) | (255u - 8u * lane - static_cast<unsigned>(j));
            s_need = need - above;
            s_done = cnt[j] == need - above;
            break;
          }
          above += cnt[j];
        }
      }
    }
    __syncthreads();
    // Read by every thread before the next pass's first barrier; warp 0 rewrites them only after
    // the second.
    prefix = s_prefix;
    need = s_need;
    if (s_done || shift == 0) break;
  }

  // ---- the ordered pass: keep gt, and the first `need` eq by column; write y and index ----
  const unsigned kk = static_cast<unsigned>(k);
  std::int32_t* idx = index + static_cast<std::int64_t>(blockIdx.x) * k;
  std::uint32_t* yb = reinterpret_cast<std::uint32_t*>(y) + row0;
  unsigned long long carry = 0;  // (gt << 32) | eq summed over the columns of earlier tiles
  for (unsigned base = 0; base < n; base += kThreads) {
    const unsigned c = base + tid;
    const unsigned gt_sofar = static_cast<unsigned>(carry >> 32);
    const unsigned eq_sofar = static_cast<unsigned>(carry);
    if (gt_sofar + min(eq_sofar, need) == kk) {  // all k placed (uniform over the block)
      if (c < n) yb[c] = 0u;
      continue;
    }
    std::uint32_t b = 0;
    bool gt = false, eq = false;
    if (c < n) {
      b = bits_at(c);
      const std::uint32_t h = rank_key(b) >> shift;
      gt = h > prefix;
      eq = h == prefix;
    }
    const unsigned long long flag = (gt ? (1ull << 32) : 0ull) | (eq ? 1ull : 0ull);
    unsigned long long before, total;
    Scan(scan_tmp).ExclusiveSum(flag, before, total);
    before += carry;
    carry += total;
    const unsigned gt_before = static_cast<unsigned>(before >> 32);
    const unsigned eq_before = static_cast<unsigned>(before);
    const bool kept = gt || (eq && eq_before < need);
    if (c < n) {
      yb[c] = kept ? b : 0u;
      if (kept) idx[gt_before + min(eq_before, need)] = static_cast<std::int32_t>(c);
    }
    __syncthreads();  // scan_tmp is reused by the next tile
  }
}

// The staged kernel's dynamic shared memory limit on the context's device, in bytes (0: never
// stage). Asked of the driver once per device, when the opt-in above 48 KiB is also granted.
template <int kThreads>
long long stage_limit(const Context& ctx) {
  constexpr int kMaxDevices = 64;
  static std::atomic<long long> cached[kMaxDevices] = {};  // limit + 1; 0 = not asked yet
  const int dev = ctx.device;
  CUAE_CHECK(dev >= 0 && dev < kMaxDevices, "ksparse_forward: CUDA device " + std::to_string(dev));
  long long v = cached[dev].load(std::memory_order_relaxed);
  if (v == 0) {  // two threads may both ask; they store the same value
    auto kernel = ksparse_forward_kernel<kThreads, true>;
    int optin = 0;
    CUAE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaFuncAttributes fa{};
    CUAE_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    long long limit = static_cast<long long>(optin) - static_cast<long long>(fa.sharedSizeBytes);
    if (limit > kStageMaxBytes) limit = kStageMaxBytes;
    if (limit < 0) limit = 0;
    if (limit > 0)
      CUAE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(limit)));
    v = limit + 1;
    cached[dev].store(v, std::memory_order_relaxed);
  }
  return v - 1;
}

template <int kThreads>
void ksparse_forward_cuda(const Context& ctx, const KSparse& a, cudaStream_t stream) {
  const long long bytes = static_cast<long long>(a.n) * static_cast<long long>(sizeof(float));
  const dim3 grid(static_cast<unsigned>(a.m));
  if (bytes <= stage_limit<kThreads>(ctx)) {
    ksparse_forward_kernel<kThreads, true>
        <<<grid, kThreads, static_cast<std::size_t>(bytes), stream>>>(a.x, a.y, a.index, a.n, a.k);
  } else {
    ksparse_forward_kernel<kThreads, false><<<grid, kThreads, 0, stream>>>(a.x, a.y, a.index, a.n, a.k);
  }
  CUAE_CUDA_LAUNCH_CHECK();
}

// dx[r, index[r, t]] (+)= dy[r, index[r, t]] over the m·k = total < 2^31 kept entries.
template <bool kAcc>
__global__ void ksparse_scatter_kernel(const float* __restrict__ dy, const std::int32_t* __restrict__ index,
                                       float* __restrict__ dx, unsigned total, int n, unsigned k) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const std::int64_t off = static_cast<std::int64_t>(i / k) * n + index[i];
    if constexpr (kAcc) dx[off] += dy[off];
    else dx[off] = dy[off];
  }
}

void ksparse_backward_cuda(const Context& ctx, const KSparseBackward& a, cudaStream_t stream) {
  if (!a.acc_dx) {
    CUAE_CUDA_CHECK(cudaMemsetAsync(a.dx, 0, static_cast<std::size_t>(a.m) * a.n * sizeof(float), stream));
  }
  constexpr int kBlock = 256;
  const std::int64_t total = static_cast<std::int64_t>(a.m) * a.k;  // <= m·n < 2^31 (validated)
  const int grid = launch::grid_for(ctx, total, kBlock);
  if (a.acc_dx) {
    ksparse_scatter_kernel<true><<<grid, kBlock, 0, stream>>>(a.dy, a.index, a.dx, static_cast<unsigned>(total), a.n,
                                                              static_cast<unsigned>(a.k));
  } else {
    ksparse_scatter_kernel<false><<<grid, kBlock, 0, stream>>>(a.dy, a.index, a.dx, static_cast<unsigned>(total), a.n,
                                                               static_cast<unsigned>(a.k));
  }
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void ksparse_forward(const Context& ctx, const KSparse& a) {
  validate(a);
  const cudaStream_t stream = launch::stream_of(ctx);
  // Enough threads that a row takes a few tiles, few enough that short rows do not idle warps.
  if (a.n <= 128) ksparse_forward_cuda<32>(ctx, a, stream);
  else if (a.n <= 1024) ksparse_forward_cuda<128>(ctx, a, stream);
  else if (a.n <= 4096) ksparse_forward_cuda<256>(ctx, a, stream);
  else ksparse_forward_cuda<512>(ctx, a, stream);
}

void ksparse_backward(const Context& ctx, const KSparseBackward& a) {
  validate(a);
  ksparse_backward_cuda(ctx, a, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
