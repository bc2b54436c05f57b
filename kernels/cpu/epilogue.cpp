#include "kernels/cpu/epilogue.hpp"

#include <algorithm>
#include <vector>

#include "kernels/act_math.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/dispatch.hpp"

namespace cuae::kern::cpu {

namespace {
using i64 = std::int64_t;
constexpr i64 kBiasBlockRows = 256;  // rows per partial bias sum
}  // namespace

void bias_act_rows(float* y, float* z, const float* b, i64 rows, int ch, Act act, float slope) {
  dispatch_act(act, [&](auto c) {
    constexpr Act A = decltype(c)::value;
#pragma omp parallel for schedule(static) if (rows * ch >= kParallelMin)
    for (i64 i = 0; i < rows; ++i) {
      float* yr = y + i * ch;
      float* zr = z ? z + i * ch : nullptr;
      for (int j = 0; j < ch; ++j) {
        const float v = yr[j] + (b ? b[j] : 0.0f);
        if (zr) zr[j] = v;
        yr[j] = act_forward(A, v, slope);
      }
    }
  });
}

namespace {

// dz = dy · act'(y, z) over a contiguous range of elements; y or z may be null where the
// activation does not read it (the dispatch below passes a dummy pointer instead, so the loop
// has no branch per element and vectorizes).
template <Act A>
void act_backward_range(const float* dy, const float* y, const float* z, float* dz, i64 count, float slope) {
#pragma omp simd
  for (i64 e = 0; e < count; ++e) dz[e] = dy[e] * act_derivative(A, y[e], z[e], slope);
}

// part[j] += Σ_rows m[row, j] in double, for a block of rows (a fixed order: the result does not
// depend on the thread count).
void add_column_sums(const float* m, i64 rows, int ch, double* part) {
  if (ch == 1) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (i64 i = 0; i < rows; ++i) s += static_cast<double>(m[i]);
    part[0] += s;
    return;
  }
  for (i64 i = 0; i < rows; ++i) {
    const float* r = m + i * ch;
#pragma omp simd
    for (int j = 0; j < ch; ++j) part[j] += static_cast<double>(r[j]);
  }
}

}  // namespace

void act_backward_bias(const float* dy, const float* y, const float* z, float* dz, float* db, bool acc_db, i64 rows,
                       int ch, Act act, float slope) {
  const i64 blocks = (rows + kBiasBlockRows - 1) / kBiasBlockRows;
  std::vector<double> partial(db ? static_cast<std::size_t>(blocks) * ch : 0, 0.0);
  // An activation that does not read y (or z) gets dy in its place: any readable array of the
  // same length will do, and the value is ignored.
  const float* ys = y ? y : dy;
  const float* zs = z ? z : dy;
  dispatch_act(act, [&](auto c) {
    constexpr Act A = decltype(c)::value;
#pragma omp parallel for schedule(static) if (rows * ch >= kParallelMin)
    for (i64 blk = 0; blk < blocks; ++blk) {
      const i64 r0 = blk * kBiasBlockRows, r1 = std::min(rows, r0 + kBiasBlockRows);
      const i64 e0 = r0 * ch, count = (r1 - r0) * ch;
      act_backward_range<A>(dy + e0, ys + e0, zs + e0, dz + e0, count, slope);
      if (db) add_column_sums(dz + e0, r1 - r0, ch, partial.data() + blk * ch);
    }
  });
  if (!db) return;
  for (int j = 0; j < ch; ++j) {
    double s = acc_db ? static_cast<double>(db[j]) : 0.0;
    for (i64 blk = 0; blk < blocks; ++blk) s += partial[static_cast<std::size_t>(blk * ch + j)];
    db[j] = static_cast<float>(s);
  }
}

}  // namespace cuae::kern::cpu
