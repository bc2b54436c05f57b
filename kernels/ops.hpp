// The op table: every op cuae runs, with ONE signature shared by the CPU reference
// (kernels/cpu) and the CUDA implementation (kernels/cuda).
//
// An op is a free function `void name(const Context&, const Args&)`. Args is a plain struct of raw
// pointers, sizes and attributes; it never owns memory and never reads a config. All tensors are
// row-major float32 and contiguous. Both backends fill an OpTable from the same X-macro, so a
// signature that drifts between them is a compile error, and a backend that lacks an op cannot
// be built (there is no silent fallback from CUDA to CPU).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cuae::kern {

enum class Act : int { Identity = 0, ReLU, LeakyReLU, Sigmoid, Tanh, GELU };
enum class LossKind : int { MSE = 0, L1, BCEWithLogits };
enum class OptKind : int { SGD = 0, Adam, AdamW };
enum class NoiseKind : int { Mask = 0, Gaussian, SaltPepper };
enum class PenaltyKind : int { L1 = 0, KL };

// What an op may use besides its arguments. On the CPU backend every pointer is null. The scratch
// and workspace are shared by the ops enqueued on this context's stream: a second stream needs a
// Context (and so a Backend) of its own.
struct Context {
  void* stream = nullptr;          // cudaStream_t the op is enqueued on
  void* blaslt = nullptr;          // cublasLtHandle_t
  void* workspace = nullptr;       // GEMM workspace (device), owned by the backend
  std::size_t workspace_bytes = 0;
  float* scratch = nullptr;        // reduction partials (device), owned by the backend
  std::size_t scratch_floats = 0;
  bool tf32 = false;               // allow TF32 tensor cores in fp32 GEMMs
  int variant = 0;                 // kernel variant (0 = production choice); the benchmark sweeps it
};

// Kernel variants dense_forward/dense_backward have on the CUDA backend (Context::variant <
// kDenseVariants); the other ops have one.
constexpr int kDenseVariants = 3;

// Y = act(X·Wᵀ + b).  X: [m,k]; W: [n,k] (or [k,n] when w_kn, the tied-decoder layout); b: [n] or
// null; Y: [m,n]. z receives the pre-activation X·Wᵀ + b when non-null; the backward of GELU needs
// it, every other activation's derivative is computed from Y.
struct DenseForward {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  float* y = nullptr;
  float* z = nullptr;
  int m = 0, n = 0, k = 0;
  bool w_kn = false;
  Act act = Act::Identity;
  float slope = 0.01f;             // leaky ReLU's negative slope (> 0)
};

// Backward of DenseForward. dZ = dY ⊙ act'(·) and db = Σ_rows dZ in one pass; then
// dW = dZᵀ·X (or Xᵀ·dZ when w_kn) and dX = dZ·W. dz is an [m,n] workspace. Any of dx, dw, db may be
// null (not wanted); acc_* adds into the destination instead of overwriting it, which is how a value
// used twice accumulates its gradient. y may be null for identity and GELU (their derivatives do
// not need it); dz is scratch whose contents afterwards are unspecified.
struct DenseBackward {
  const float* dy = nullptr;
  const float* y = nullptr;
  const float* z = nullptr;        // required for GELU
  const float* x = nullptr;
  const float* w = nullptr;
  float* dz = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  bool acc_dx = false, acc_dw = false, acc_db = false;
  int m = 0, n = 0, k = 0;
  bool w_kn = false;
  Act act = Act::Identity;
  float slope = 0.01f;
};

// y = act(x) elementwise over count values (inference outputs such as sigmoid(logits)).
struct Activation {
  const float* x = nullptr;
  float* y = nullptr;
  std::int64_t count = 0;
  Act act = Act::Identity;
  float slope = 0.01f;
};

// dx = dy ⊙ act'(y, z) elementwise (backward of Activation); dx += … when acc_dx. z is required for
// GELU only.
struct ActivationBackward {
  const float* dy = nullptr;
  const float* y = nullptr;
  const float* z = nullptr;
  float* dx = nullptr;
  std::int64_t count = 0;
  bool acc_dx = false;
  Act act = Act::Identity;
  float slope = 0.01f;
};

// dst[r, :] = src[index[r], :] for r < rows: assembles a shuffled mini-batch from a dataset that
// lives on the backend's device, so a training step needs no host copy. Indices must be in
// [0, src_rows); the op does not check them on the device (the caller builds them).
struct GatherRows {
  const float* src = nullptr;
  const std::int32_t* index = nullptr;
  float* dst = nullptr;
  std::int64_t rows = 0, cols = 0;
};

// Reconstruction loss, value and gradient in one pass over count = rows·cols elements.
//   loss[0] = scale · Σ ℓ(pred, target);  grad = scale · ∂ℓ/∂pred (skipped when grad is null).
// MSE: ℓ = (p−t)²; L1: ℓ = |p−t| (subgradient 0 at p = t); BCEWithLogits: pred holds logits x,
// ℓ = max(x,0) − x·t + log(1 + e^{−|x|}), ∂ℓ/∂x = σ(x) − t.
// The value is written (never accumulated) into loss[0], which lives in the backend's memory (device
// memory on CUDA).
struct Loss {
  const float* pred = nullptr;
  const float* target = nullptr;
  float* grad = nullptr;
  float* loss = nullptr;
  std::int64_t count = 0;
  float scale = 1.0f;
  bool acc_grad = false;
  LossKind kind = LossKind::MSE;
};

// One fused update over a flat parameter buffer of n values. The first n_decay values are weights
// (decayed); the rest are biases (never decayed).
// Weights (the decayed prefix) also get the L1 penalty's subgradient: g' = g + λ₁·sign(p) (sign(0)
// = 0) for every kind, before the update below.
//   SGD:   g' = g + wd·p; v = μ·v + g'; p -= lr·(nesterov ? g' + μ·v : v)
//          (m unused; v may be null when μ = 0)
//   Adam:  g' = g + wd·p (L2); m,v moments; p -= lr·m̂/(√v̂ + eps)
//   AdamW: p -= lr·wd·p_old + lr·m̂/(√v̂ + eps), the decay on the parameter before this step
//          (PyTorch's order)
// step is 1 for the first update (bias correction).
struct OptimizerStep {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  std::int64_t n = 0;
  std::int64_t n_decay = 0;
  OptKind kind = OptKind::Adam;
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
  float l1 = 0.0f;                 // L1 weight penalty λ₁: adds λ₁·sign(p) to the gradient of weights
  float momentum = 0.0f;
  bool nesterov = false;
  std::int64_t step = 1;
};

// ------------------------------------------------------------------------------------------------
// Regularizers. The random ones draw from Philox4x32-10 keyed by (seed, step, element) as
// kernels/philox.hpp defines, so both backends draw the same words and a run repeats exactly.
// ------------------------------------------------------------------------------------------------

// Input corruption for a denoising autoencoder, y = corrupt(x) over count values (y may equal x):
//   Mask:       y = 0 where u < level, else x                  (u = uniform word of the element)
//   SaltPepper: y = lo where u < level/2, hi where level/2 <= u < level, else x
//   Gaussian:   y = x + level·n (n standard normal, Box-Muller on the element's word pair)
// level is the fraction ν in [0, 1] (Mask, SaltPepper) or σ >= 0 (Gaussian). No gradient: the
// corrupted value is data.
struct Corrupt {
  const float* x = nullptr;
  float* y = nullptr;
  std::int64_t count = 0;
  NoiseKind kind = NoiseKind::Mask;
  float level = 0.0f;
  float lo = 0.0f, hi = 1.0f;      // SaltPepper's pepper and salt values
  std::uint64_t seed = 0, step = 0;
};

// Inverted dropout: y = x·keep/(1−p) with keep = (u >= p), p in [0, 1). The backward draws the same
// mask again from (seed, step): dx = dy·keep/(1−p) (dx += … when acc_dx). No mask is stored.
struct Dropout {
  const float* x = nullptr;
  float* y = nullptr;
  std::int64_t count = 0;
  float p = 0.0f;
  std::uint64_t seed = 0, step = 0;
};
struct DropoutBackward {
  const float* dy = nullptr;
  float* dx = nullptr;
  std::int64_t count = 0;
  float p = 0.0f;
  bool acc_dx = false;
  std::uint64_t seed = 0, step = 0;
};

// An activity penalty on a hidden layer's output h [m, n] (m samples), value and gradient in one op:
//   L1: loss = w/m · Σ_ij |h_ij|;             grad_ij (+)= w/m · sign(h_ij)
//   KL: ρ̂_j = (1/m)·Σ_i h_ij, clamped to [1e-6, 1 − 1e-6];
//       loss = w · Σ_j KL(ρ‖ρ̂_j) = w · Σ_j [ρ log(ρ/ρ̂_j) + (1−ρ) log((1−ρ)/(1−ρ̂_j))];
//       grad_ij (+)= w/m · (−ρ/ρ̂_j + (1−ρ)/(1−ρ̂_j))    (the clamped ρ̂ in both)
// KL needs h in (0, 1) (a sigmoid layer); rho_hat [n] receives ρ̂ (required for KL, unused for L1).
// loss[0] is written, never accumulated (backend memory, like Loss); grad may be null (value only).
struct ActivityPenalty {
  const float* h = nullptr;
  float* grad = nullptr;
  float* loss = nullptr;
  float* rho_hat = nullptr;
  int m = 0, n = 0;
  PenaltyKind kind = PenaltyKind::L1;
  float weight = 0.0f;             // β (KL) or λ (L1)
  float rho = 0.05f;               // KL target activation, in (0, 1)
  bool acc_grad = false;
};

// k-sparse coding (Makhzani & Frey): per row of x [m, n] keep the k largest values, zero the rest.
// Ties are broken towards the lower column, so exactly k entries per row are kept. index [m, k]
// receives the kept columns of each row (ascending). y may not alias x. Kept entries of y are x's
// bits unchanged (a kept −0.0 stays −0.0); the others are +0.0.
// The order is the float order with two choices made: −0.0 and +0.0 are equal values (a tie, so
// the lower column wins), and NaN ranks above +∞, every NaN equal to every other whatever its sign
// or payload (so a NaN is kept and propagates instead of vanishing from the row). Both backends
// rank the order-preserving key of a float's bits b: NaN → 0xffffffff, ±0 → 0x80000000, else
// (sign bit set ? ~b : b | 0x80000000), compared as unsigned integers.
struct KSparse {
  const float* x = nullptr;
  float* y = nullptr;
  std::int32_t* index = nullptr;
  int m = 0, n = 0, k = 0;
};
// dx = dy at the kept entries, 0 elsewhere (dx += dy at the kept entries when acc_dx). index is
// the forward's: k distinct columns in [0, n) per row (not checked on the device). dx may not
// alias dy.
struct KSparseBackward {
  const float* dy = nullptr;
  const std::int32_t* index = nullptr;
  float* dx = nullptr;
  int m = 0, n = 0, k = 0;
  bool acc_dx = false;
};

// Contractive penalty (Rifai et al. 2011) of a dense layer h = act(x·Wᵀ + b), W [n, k], h [m, n]:
// the Jacobian ∂h/∂x of sample i has ‖J_i‖²_F = Σ_j a′(z_ij)²·s_j with s_j = Σ_l W_jl². Written
// through h (a′ is a function of the output for every supported activation), g(h) = a′(z)²:
//   sigmoid: g = (h(1−h))²   tanh: g = (1−h²)²   identity: g = 1   relu: g = [h > 0]
//   leaky relu: g = 1 for h > 0, slope² otherwise
//   loss      = w/m · Σ_ij g(h_ij)·s_j
//   grad_h_ij (+)= w/m · g′(h_ij)·s_j       (with dh/dz from the layer's backward this is the exact
//                                           derivative through a″; zero for the piecewise-linear
//                                           activations, whose penalty only shrinks the weights of
//                                           the active units)
//   grad_w_jl (+)= 2w/m · G_j·W_jl,  G_j = Σ_i g(h_ij)
// ws is a workspace of 2n floats (s and G). grad_h and grad_w may each be null.
struct ContractivePenalty {
  const float* h = nullptr;
  const float* w = nullptr;
  float* grad_h = nullptr;
  float* grad_w = nullptr;
  float* loss = nullptr;
  float* ws = nullptr;
  int m = 0, n = 0, k = 0;
  Act act = Act::Sigmoid;
  float slope = 0.01f;
  float weight = 0.0f;
  bool acc_grad_h = false, acc_grad_w = false;
};

// name, argument struct. Add an op here, then in both kernels/cpu and kernels/cuda.
#define CUAE_OP_TABLE(X)              \
  X(dense_forward, DenseForward)      \
  X(dense_backward, DenseBackward)    \
  X(activation_forward, Activation)   \
  X(activation_backward, ActivationBackward) \
  X(gather_rows, GatherRows)          \
  X(loss, Loss)                       \
  X(optimizer_step, OptimizerStep)    \
  X(corrupt, Corrupt)                 \
  X(dropout_forward, Dropout)         \
  X(dropout_backward, DropoutBackward) \
  X(activity_penalty, ActivityPenalty) \
  X(ksparse_forward, KSparse)         \
  X(ksparse_backward, KSparseBackward) \
  X(contractive_penalty, ContractivePenalty)

#define CUAE_DECLARE_OP(name, A) void name(const Context& ctx, const A& a);
namespace cpu {
CUAE_OP_TABLE(CUAE_DECLARE_OP)
}
namespace cuda {
CUAE_OP_TABLE(CUAE_DECLARE_OP)
}
#undef CUAE_DECLARE_OP

struct OpTable {
#define CUAE_OP_POINTER(name, A) void (*name)(const Context&, const A&);
  CUAE_OP_TABLE(CUAE_OP_POINTER)
#undef CUAE_OP_POINTER
};

const OpTable& cpu_ops();
const OpTable& cuda_ops();

// Scalar activation math shared by both backends' reference formulas (host and device).
#if defined(__CUDACC__)
#define CUAE_HD __host__ __device__ __forceinline__
#else
#define CUAE_HD inline
#endif

const char* act_name(Act a);
const char* loss_name(LossKind k);
const char* noise_name(NoiseKind k);
const char* penalty_name(PenaltyKind k);

}  // namespace cuae::kern
