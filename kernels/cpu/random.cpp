// CPU reference for the random ops: input corruption and dropout. Every element's random word comes
// from kernels/philox.hpp exactly as on the GPU (element e: word e % 4 of the Philox group e / 4),
// so the CPU and CUDA masks are identical and the Gaussian noise agrees to a few ulp.
#include <cstdint>

#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

namespace {

// Calls f(e0, words, len) once per group g of four elements of the op a (its count, seed and step):
// e0 = 4g is its first element, words the group's Philox output and len (1 to 4) the number of its
// elements inside [0, count).
template <class A, class F>
void for_groups(const A& a, F f) {
  const std::int64_t count = a.count, groups = (count + 3) / 4;
  const std::uint64_t seed = a.seed, step = step_of(a.step, a.step_at);
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (std::int64_t g = 0; g < groups; ++g) {
    const Philox4 r = philox_group(seed, step, static_cast<std::uint64_t>(g));
    const std::int64_t e0 = g * 4;
    const int len = static_cast<int>(count - e0 < 4 ? count - e0 : 4);
    f(e0, r, len);
  }
}

}  // namespace

void corrupt(const Context&, const Corrupt& a) {
  validate(a);
  switch (a.kind) {
    case NoiseKind::Mask:
      for_groups(a, [&](std::int64_t e0, const Philox4& r, int len) {
        for (int j = 0; j < len; ++j) a.y[e0 + j] = philox_uniform(r.w[j]) < a.level ? 0.0f : a.x[e0 + j];
      });
      return;
    case NoiseKind::SaltPepper: {
      const float half = 0.5f * a.level;
      for_groups(a, [&](std::int64_t e0, const Philox4& r, int len) {
        for (int j = 0; j < len; ++j) {
          const float u = philox_uniform(r.w[j]);
          a.y[e0 + j] = u < half ? a.lo : (u < a.level ? a.hi : a.x[e0 + j]);
        }
      });
      return;
    }
    case NoiseKind::Gaussian:
      for_groups(a, [&](std::int64_t e0, const Philox4& r, int len) {
        float n[4];
        philox_normal2(r.w[0], r.w[1], n[0], n[1]);
        philox_normal2(r.w[2], r.w[3], n[2], n[3]);
        for (int j = 0; j < len; ++j) a.y[e0 + j] = a.x[e0 + j] + a.level * n[j];
      });
      return;
  }
}

void dropout_forward(const Context&, const Dropout& a) {
  validate(a);
  const float scale = 1.0f / (1.0f - a.p);
  for_groups(a, [&](std::int64_t e0, const Philox4& r, int len) {
    for (int j = 0; j < len; ++j) a.y[e0 + j] = philox_uniform(r.w[j]) >= a.p ? a.x[e0 + j] * scale : 0.0f;
  });
}

void dropout_backward(const Context&, const DropoutBackward& a) {
  validate(a);
  const float scale = 1.0f / (1.0f - a.p);
  for_groups(a, [&](std::int64_t e0, const Philox4& r, int len) {
    for (int j = 0; j < len; ++j) {
      const float g = philox_uniform(r.w[j]) >= a.p ? a.dy[e0 + j] * scale : 0.0f;
      a.dx[e0 + j] = a.acc_dx ? a.dx[e0 + j] + g : g;
    }
  });
}

}  // namespace cuae::kern::cpu
