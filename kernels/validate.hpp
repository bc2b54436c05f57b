// Argument validation shared by both backends. Every op entry in kernels/cpu and kernels/cuda
// calls validate(args) first, so a bad call fails the same way on either device: a cuae::Error
// naming the op and its shapes, thrown before any memory is touched or any kernel is enqueued.
// Keeping the checks in one place is what keeps them symmetric; the op test asserts that both
// backends reject the same bad arguments.
//
// Header-only and free of CUDA, so .cpp and .cu files include it alike (host code only). The
// checks cost a few compares per launch: CUAE_CHECK evaluates its message only on failure, so the
// descriptions (d below) are built lazily and a valid call allocates nothing.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "cuae/error.hpp"
#include "kernels/ops.hpp"

namespace cuae::kern {

namespace detail {

// Kernels index a tensor with 32-bit ints (and cuBLAS takes int leading dimensions), so every
// tensor of an op must hold fewer than 2^31 values. 8 GiB of floats per tensor is far beyond an
// autoencoder layer; failing loudly beats wrapping an index.
constexpr std::int64_t kMaxElements = 2147483647;

inline bool act_ok(Act a) {
  const int v = static_cast<int>(a);
  return v >= static_cast<int>(Act::Identity) && v <= static_cast<int>(Act::GELU);
}

// Leaky ReLU's derivative is recovered from its output (y > 0 <=> z > 0), which holds only for a
// positive slope.
inline bool slope_ok(Act a, float slope) {
  return a != Act::LeakyReLU || (std::isfinite(slope) && slope > 0.0f);
}

inline std::string dense_desc(const char* op, int m, int n, int k, bool w_kn, Act act) {
  return std::string(op) + "(m=" + std::to_string(m) + ", n=" + std::to_string(n) + ", k=" +
         std::to_string(k) + ", W " + (w_kn ? "[k,n]" : "[n,k]") + ", act=" + act_name(act) + ")";
}

template <class Desc>
void check_dense_shape(const Desc& d, int m, int n, int k, Act act, float slope) {
  CUAE_CHECK(m > 0 && n > 0 && k > 0, d() + ": m, n and k must be positive");
  const std::int64_t M = m, N = n, K = k;
  CUAE_CHECK(M * K <= kMaxElements && N * K <= kMaxElements && M * N <= kMaxElements,
             d() + ": a tensor would exceed 2^31-1 elements");
  CUAE_CHECK(act_ok(act), d() + ": unknown activation");
  CUAE_CHECK(slope_ok(act, slope), d() + ": leaky ReLU slope must be finite and > 0, got " + std::to_string(slope));
}

template <class Desc>
void check_count(const Desc& d, std::int64_t count) {
  CUAE_CHECK(count > 0, d() + ": count must be positive");
  CUAE_CHECK(count <= kMaxElements, d() + ": count exceeds 2^31-1 elements");
}

}  // namespace detail

inline void validate(const DenseForward& a) {
  const auto d = [&] { return detail::dense_desc("dense_forward", a.m, a.n, a.k, a.w_kn, a.act); };
  detail::check_dense_shape(d, a.m, a.n, a.k, a.act, a.slope);
  CUAE_CHECK(a.x && a.w && a.y, d() + ": x, w and y must be non-null");
}

inline void validate(const DenseBackward& a) {
  const auto d = [&] { return detail::dense_desc("dense_backward", a.m, a.n, a.k, a.w_kn, a.act); };
  detail::check_dense_shape(d, a.m, a.n, a.k, a.act, a.slope);
  CUAE_CHECK(a.dy && a.dz, d() + ": dy and the dz workspace must be non-null");
  // The derivative is read from y for every activation but identity (constant) and GELU (from z).
  if (a.act == Act::GELU) CUAE_CHECK(a.z, d() + ": GELU backward needs the pre-activation z");
  else if (a.act != Act::Identity) CUAE_CHECK(a.y, d() + ": backward needs the forward output y");
  if (a.dw) CUAE_CHECK(a.x, d() + ": dw needs x");
  if (a.dx) CUAE_CHECK(a.w, d() + ": dx needs w");
}

inline void validate(const Activation& a) {
  const auto d = [&] { return "activation_forward(count=" + std::to_string(a.count) + ", act=" + act_name(a.act) + ")"; };
  detail::check_count(d, a.count);
  CUAE_CHECK(detail::act_ok(a.act), d() + ": unknown activation");
  CUAE_CHECK(detail::slope_ok(a.act, a.slope), d() + ": leaky ReLU slope must be finite and > 0");
  CUAE_CHECK(a.x && a.y, d() + ": x and y must be non-null");
}

// activation_backward and gather_rows (kernels/{cpu,cuda}/rows.*) take an empty tensor (count,
// rows or cols 0) as a no-op, as their entries were written to; the pointers are checked only when
// there is something to read or write.
inline void validate(const ActivationBackward& a) {
  const auto d = [&] { return "activation_backward(count=" + std::to_string(a.count) + ", act=" + act_name(a.act) + ")"; };
  CUAE_CHECK(a.count >= 0 && a.count <= detail::kMaxElements, d() + ": count must lie in [0, 2^31-1]");
  CUAE_CHECK(detail::act_ok(a.act), d() + ": unknown activation");
  CUAE_CHECK(detail::slope_ok(a.act, a.slope), d() + ": leaky ReLU slope must be finite and > 0");
  if (a.count == 0) return;
  CUAE_CHECK(a.dy && a.y && a.dx, d() + ": dy, y and dx must be non-null");
  CUAE_CHECK(a.act != Act::GELU || a.z, d() + ": GELU backward needs the pre-activation z");
}

inline void validate(const GatherRows& a) {
  const auto d = [&] { return "gather_rows(rows=" + std::to_string(a.rows) + ", cols=" + std::to_string(a.cols) + ")"; };
  CUAE_CHECK(a.rows >= 0 && a.cols >= 0, d() + ": rows and cols must be >= 0");
  // Checked as rows <= max / cols, which cannot overflow, rather than rows·cols.
  CUAE_CHECK(a.cols == 0 || a.rows <= detail::kMaxElements / a.cols, d() + ": dst would exceed 2^31-1 elements");
  if (a.rows == 0 || a.cols == 0) return;
  CUAE_CHECK(a.src && a.index && a.dst, d() + ": src, index and dst must be non-null");
}

inline void validate(const Loss& a) {
  const int kind = static_cast<int>(a.kind);
  const auto d = [&] { return "loss(count=" + std::to_string(a.count) + ", kind=" + loss_name(a.kind) + ")"; };
  detail::check_count(d, a.count);
  CUAE_CHECK(kind >= static_cast<int>(LossKind::MSE) && kind <= static_cast<int>(LossKind::BCEWithLogits),
             d() + ": unknown loss kind");
  CUAE_CHECK(a.pred && a.target && a.loss, d() + ": pred, target and loss must be non-null");
  CUAE_CHECK(std::isfinite(a.scale), d() + ": scale must be finite");
}

inline void validate(const StepBegin& a) { CUAE_CHECK(a.s, "step_begin: the step block must be non-null"); }

inline void validate(const RecordScalars& a) {
  const auto d = [&] {
    return "record_scalars(n=" + std::to_string(a.n) + ", capacity=" + std::to_string(a.capacity) + ")";
  };
  CUAE_CHECK(a.n >= 1 && a.capacity >= 1, d() + ": n and capacity must be >= 1");
  CUAE_CHECK(static_cast<std::int64_t>(a.n) * a.capacity <= detail::kMaxElements, d() + ": the ring would exceed 2^31-1 elements");
  CUAE_CHECK(a.src && a.ring && a.s, d() + ": src, ring and the step block must be non-null");
}

inline void validate(const OptimizerStep& a) {
  const int kind = static_cast<int>(a.kind);
  const auto d = [&] {
    return "optimizer_step(n=" + std::to_string(a.n) + ", n_decay=" + std::to_string(a.n_decay) +
           ", kind=" + std::to_string(kind) + ", step=" + std::to_string(a.step) + ")";
  };
  detail::check_count(d, a.n);
  CUAE_CHECK(a.n_decay >= 0 && a.n_decay <= a.n, d() + ": n_decay must lie in [0, n]");
  CUAE_CHECK(kind >= static_cast<int>(OptKind::SGD) && kind <= static_cast<int>(OptKind::AdamW),
             d() + ": unknown optimizer kind");
  CUAE_CHECK(a.param && a.grad, d() + ": param and grad must be non-null");
  CUAE_CHECK(a.step >= 1, d() + ": step counts from 1");
  CUAE_CHECK(std::isfinite(a.lr) && a.lr >= 0.0f, d() + ": lr must be finite and >= 0");
  CUAE_CHECK(std::isfinite(a.weight_decay) && a.weight_decay >= 0.0f, d() + ": weight_decay must be finite and >= 0");
  CUAE_CHECK(std::isfinite(a.l1) && a.l1 >= 0.0f, d() + ": l1 must be finite and >= 0");
  if (a.kind == OptKind::SGD) {
    CUAE_CHECK(std::isfinite(a.momentum) && a.momentum >= 0.0f, d() + ": momentum must be finite and >= 0");
    // Plain SGD (momentum 0) keeps no state; with momentum the velocity lives in v.
    if (a.momentum != 0.0f) CUAE_CHECK(a.v, d() + ": SGD with momentum needs the velocity buffer v");
    CUAE_CHECK(!a.nesterov || a.momentum > 0.0f, d() + ": Nesterov needs momentum > 0");
  } else {
    CUAE_CHECK(a.m && a.v, d() + ": Adam needs the moment buffers m and v");
    CUAE_CHECK(a.beta1 >= 0.0f && a.beta1 < 1.0f && a.beta2 >= 0.0f && a.beta2 < 1.0f,
               d() + ": beta1 and beta2 must lie in [0, 1)");
    CUAE_CHECK(std::isfinite(a.eps) && a.eps > 0.0f, d() + ": eps must be finite and > 0");
  }
}

inline void validate(const Corrupt& a) {
  const int kind = static_cast<int>(a.kind);
  const auto d = [&] {
    return "corrupt(count=" + std::to_string(a.count) + ", kind=" + noise_name(a.kind) + ", level=" + std::to_string(a.level) + ")";
  };
  detail::check_count(d, a.count);
  CUAE_CHECK(kind >= static_cast<int>(NoiseKind::Mask) && kind <= static_cast<int>(NoiseKind::SaltPepper),
             d() + ": unknown noise kind");
  CUAE_CHECK(a.x && a.y, d() + ": x and y must be non-null");
  if (a.kind == NoiseKind::Gaussian) CUAE_CHECK(std::isfinite(a.level) && a.level >= 0.0f, d() + ": sigma must be finite and >= 0");
  else CUAE_CHECK(a.level >= 0.0f && a.level <= 1.0f, d() + ": the corrupted fraction must lie in [0, 1]");
  if (a.kind == NoiseKind::SaltPepper) CUAE_CHECK(std::isfinite(a.lo) && std::isfinite(a.hi), d() + ": lo and hi must be finite");
}

inline void validate(const Dropout& a) {
  const auto d = [&] { return "dropout_forward(count=" + std::to_string(a.count) + ", p=" + std::to_string(a.p) + ")"; };
  detail::check_count(d, a.count);
  CUAE_CHECK(a.p >= 0.0f && a.p < 1.0f, d() + ": p must lie in [0, 1)");
  CUAE_CHECK(a.x && a.y, d() + ": x and y must be non-null");
}

inline void validate(const DropoutBackward& a) {
  const auto d = [&] { return "dropout_backward(count=" + std::to_string(a.count) + ", p=" + std::to_string(a.p) + ")"; };
  detail::check_count(d, a.count);
  CUAE_CHECK(a.p >= 0.0f && a.p < 1.0f, d() + ": p must lie in [0, 1)");
  CUAE_CHECK(a.dy && a.dx, d() + ": dy and dx must be non-null");
}

inline void validate(const ActivityPenalty& a) {
  const int kind = static_cast<int>(a.kind);
  const auto d = [&] {
    return "activity_penalty(m=" + std::to_string(a.m) + ", n=" + std::to_string(a.n) + ", kind=" + penalty_name(a.kind) + ")";
  };
  CUAE_CHECK(a.m > 0 && a.n > 0, d() + ": m and n must be positive");
  CUAE_CHECK(static_cast<std::int64_t>(a.m) * a.n <= detail::kMaxElements, d() + ": h would exceed 2^31-1 elements");
  CUAE_CHECK(kind >= static_cast<int>(PenaltyKind::L1) && kind <= static_cast<int>(PenaltyKind::KL), d() + ": unknown penalty kind");
  CUAE_CHECK(a.h && a.loss, d() + ": h and loss must be non-null");
  CUAE_CHECK(std::isfinite(a.weight) && a.weight >= 0.0f, d() + ": weight must be finite and >= 0");
  if (a.kind == PenaltyKind::KL) {
    CUAE_CHECK(a.rho > 0.0f && a.rho < 1.0f, d() + ": the target activation rho must lie in (0, 1)");
    CUAE_CHECK(a.rho_hat, d() + ": KL needs the rho_hat buffer of n floats");
  }
}

inline void validate(const KSparse& a) {
  const auto d = [&] {
    return "ksparse_forward(m=" + std::to_string(a.m) + ", n=" + std::to_string(a.n) + ", k=" + std::to_string(a.k) + ")";
  };
  CUAE_CHECK(a.m > 0 && a.n > 0, d() + ": m and n must be positive");
  CUAE_CHECK(static_cast<std::int64_t>(a.m) * a.n <= detail::kMaxElements, d() + ": x would exceed 2^31-1 elements");
  CUAE_CHECK(a.k >= 1 && a.k <= a.n, d() + ": k must lie in [1, n]");
  CUAE_CHECK(a.x && a.y && a.index, d() + ": x, y and index must be non-null");
  CUAE_CHECK(a.x != a.y, d() + ": y may not alias x");
}

inline void validate(const KSparseBackward& a) {
  const auto d = [&] {
    return "ksparse_backward(m=" + std::to_string(a.m) + ", n=" + std::to_string(a.n) + ", k=" + std::to_string(a.k) + ")";
  };
  CUAE_CHECK(a.m > 0 && a.n > 0, d() + ": m and n must be positive");
  CUAE_CHECK(static_cast<std::int64_t>(a.m) * a.n <= detail::kMaxElements, d() + ": dy would exceed 2^31-1 elements");
  CUAE_CHECK(a.k >= 1 && a.k <= a.n, d() + ": k must lie in [1, n]");
  CUAE_CHECK(a.dy && a.index && a.dx, d() + ": dy, index and dx must be non-null");
}

inline void validate(const ContractivePenalty& a) {
  const auto d = [&] {
    return "contractive_penalty(m=" + std::to_string(a.m) + ", n=" + std::to_string(a.n) + ", k=" + std::to_string(a.k) +
           ", act=" + act_name(a.act) + ")";
  };
  CUAE_CHECK(a.m > 0 && a.n > 0 && a.k > 0, d() + ": m, n and k must be positive");
  CUAE_CHECK(static_cast<std::int64_t>(a.m) * a.n <= detail::kMaxElements &&
                 static_cast<std::int64_t>(a.n) * a.k <= detail::kMaxElements,
             d() + ": a tensor would exceed 2^31-1 elements");
  CUAE_CHECK(a.act == Act::Identity || a.act == Act::ReLU || a.act == Act::LeakyReLU || a.act == Act::Sigmoid ||
                 a.act == Act::Tanh,
             d() + ": the contractive penalty supports identity, relu, leaky_relu, sigmoid and tanh layers");
  CUAE_CHECK(detail::slope_ok(a.act, a.slope), d() + ": leaky ReLU slope must be finite and > 0");
  CUAE_CHECK(a.h && a.w && a.loss && a.ws, d() + ": h, w, loss and the 2n-float workspace ws must be non-null");
  CUAE_CHECK(std::isfinite(a.weight) && a.weight >= 0.0f, d() + ": weight must be finite and >= 0");
}

}  // namespace cuae::kern
