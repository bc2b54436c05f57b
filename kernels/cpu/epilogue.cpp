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

void act_backward_bias(const float* dy, const float* y, const float* z, float* dz, float* db, bool acc_db, i64 rows,
                       int ch, Act act, float slope) {
  const i64 blocks = (rows + kBiasBlockRows - 1) / kBiasBlockRows;
  std::vector<double> partial(db ? static_cast<std::size_t>(blocks) * ch : 0, 0.0);
  dispatch_act(act, [&](auto c) {
    constexpr Act A = decltype(c)::value;
#pragma omp parallel for schedule(static) if (rows * ch >= kParallelMin)
    for (i64 blk = 0; blk < blocks; ++blk) {
      double* part = db ? partial.data() + blk * ch : nullptr;
      const i64 end = std::min(rows, (blk + 1) * kBiasBlockRows);
      for (i64 i = blk * kBiasBlockRows; i < end; ++i) {
        const i64 row = i * ch;
        for (int j = 0; j < ch; ++j) {
          const i64 e = row + j;
          const float d = dy[e] * act_derivative(A, y ? y[e] : 0.0f, z ? z[e] : 0.0f, slope);
          dz[e] = d;
          if (part) part[j] += d;
        }
      }
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
