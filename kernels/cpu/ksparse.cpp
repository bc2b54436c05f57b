// CPU reference for k-sparse coding: per row keep the k largest values (ties to the lower column).
//
// Values are ranked through the order-preserving 32-bit key of kernels/ops.hpp's KSparse comment
// (the CUDA kernel ranks the same keys): −0.0 and +0.0 are one value, every NaN ranks above +∞.
// Ranking keys rather than floats makes the comparator a strict total order on (key, column) for
// every input, NaN included, so std::nth_element is always well defined. Per row: nth_element
// (O(n) expected) puts the k largest first, a sort of those k (O(k log k)) gives the ascending
// index list; y is zeroed and the kept values are copied bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

namespace {

// Larger key = larger value. The same mapping as rank_key in kernels/cuda/ksparse.cu.
inline std::uint32_t rank_key(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  const std::uint32_t mag = b & 0x7fffffffu;
  if (mag > 0x7f800000u) return 0xffffffffu;  // NaN: above +inf (0xff800000)
  if (mag == 0) return 0x80000000u;           // -0.0 ranks as +0.0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

}  // namespace

void ksparse_forward(const Context&, const KSparse& a) {
  validate(a);
  const std::int64_t n = a.n, k = a.k;
#pragma omp parallel if (static_cast<std::int64_t>(a.m) * a.n >= kParallelMin)
  {
    std::vector<std::uint32_t> key(static_cast<std::size_t>(n));
    std::vector<std::int32_t> order(static_cast<std::size_t>(n));
#pragma omp for schedule(static)
    for (int r = 0; r < a.m; ++r) {
      const float* x = a.x + r * n;
      for (std::int64_t c = 0; c < n; ++c) key[static_cast<std::size_t>(c)] = rank_key(x[c]);
      std::iota(order.begin(), order.end(), 0);
      // Larger key first; equal keys by lower column.
      std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), [&](std::int32_t p, std::int32_t q) {
        const std::uint32_t kp = key[static_cast<std::size_t>(p)], kq = key[static_cast<std::size_t>(q)];
        return kp > kq || (kp == kq && p < q);
      });
      std::sort(order.begin(), order.begin() + k);
      float* y = a.y + r * n;
      std::fill(y, y + n, 0.0f);
      std::int32_t* idx = a.index + r * k;
      for (std::int64_t t = 0; t < k; ++t) {
        const std::int32_t c = order[static_cast<std::size_t>(t)];
        idx[t] = c;
        std::memcpy(&y[c], &x[c], sizeof(float));  // bit for bit: keeps -0.0 and a NaN's payload
      }
    }
  }
}

void ksparse_backward(const Context&, const KSparseBackward& a) {
  validate(a);
  const std::int64_t n = a.n, k = a.k;
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(a.m) * a.n >= kParallelMin)
  for (int r = 0; r < a.m; ++r) {
    const float* dy = a.dy + r * n;
    float* dx = a.dx + r * n;
    const std::int32_t* idx = a.index + r * k;
    if (a.acc_dx) {
      for (std::int64_t t = 0; t < k; ++t) dx[idx[t]] += dy[idx[t]];
    } else {
      std::fill(dx, dx + n, 0.0f);
      for (std::int64_t t = 0; t < k; ++t) dx[idx[t]] = dy[idx[t]];
    }
  }
}

}  // namespace cuae::kern::cpu
