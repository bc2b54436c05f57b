// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011). A pure function of a 128-bit counter and a 64-bit key, so
// any element's numbers can be drawn independently, in any order, on either backend, and the CPU
// reference and the CUDA kernels draw bit-identical words.
//
// cuae's convention (every random op follows it; tests/test_ops_random.cpp pins it down):
//   key     = {lo32(seed), hi32(seed)}       seed: the op's 64-bit seed (the executor mixes the run's
//                                            seed with the node's name, so two nodes never share one)
//   counter = {lo32(g), hi32(g), lo32(step), hi32(step)}   g = element / 4
//   element e uses word e % 4 of philox(counter, key).
// So one Philox evaluation serves four consecutive elements (one float4 on the GPU), and the step
// number makes every training step draw fresh numbers that a repeated run draws again.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/ops.hpp"  // CUAE_HD

namespace cuae::kern {

struct Philox4 {
  std::uint32_t w[4];
};

CUAE_HD std::uint32_t philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter c with key (k0, k1).
CUAE_HD Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                              std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    std::uint32_t hi0, hi1;
    const std::uint32_t lo0 = philox_mulhilo(kM0, c0, hi0);
    const std::uint32_t lo1 = philox_mulhilo(kM1, c2, hi1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// The four words for elements [4g, 4g+4) of a draw keyed by (seed, step).
CUAE_HD Philox4 philox_group(std::uint64_t seed, std::uint64_t step, std::uint64_t g) {
  return philox4x32_10(static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(g >> 32),
                       static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
                       static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// A uniform float in [0, 1) from the top 24 bits of a word: exact in float, identical on both
// backends, so a threshold test (keep iff u >= p) gives the same mask everywhere.
CUAE_HD float philox_uniform(std::uint32_t w) { return static_cast<float>(w >> 8) * 5.9604644775390625e-8f; }

// A uniform float in (0, 1], for a logarithm.
CUAE_HD float philox_uniform_pos(std::uint32_t w) {
  return static_cast<float>((w >> 8) + 1u) * 5.9604644775390625e-8f;
}

// Two standard normals from two words (Box-Muller). Words (0, 1) of a group give the normals of
// elements 4g and 4g+1, words (2, 3) those of 4g+2 and 4g+3. The transcendental functions are the
// platform's float ones, so the CPU and the GPU agree to a few ulp (not bit for bit).
CUAE_HD void philox_normal2(std::uint32_t wa, std::uint32_t wb, float& n0, float& n1) {
  const float u1 = philox_uniform_pos(wa);
  const float u2 = philox_uniform(wb);
  const float r = sqrtf(-2.0f * logf(u1));
  const float t = 6.283185307179586f * u2;
  n0 = r * cosf(t);
  n1 = r * sinf(t);
}

// Mixes a run's seed with a 64-bit stream id (e.g. a hash of a node's name) into an op seed:
// splitmix64's finaliser, so nearby inputs give unrelated keys.
inline std::uint64_t philox_mix_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed ^ (stream + 0x9E3779B97F4A7C15ull + (seed << 6) + (seed >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace cuae::kern
