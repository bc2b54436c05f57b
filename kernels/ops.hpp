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
  float momentum = 0.0f;
  bool nesterov = false;
  std::int64_t step = 1;
};

// name, argument struct. Add an op here, then in both kernels/cpu and kernels/cuda.
#define CUAE_OP_TABLE(X)              \
  X(dense_forward, DenseForward)      \
  X(dense_backward, DenseBackward)    \
  X(activation_forward, Activation)   \
  X(activation_backward, ActivationBackward) \
  X(gather_rows, GatherRows)          \
  X(loss, Loss)                       \
  X(optimizer_step, OptimizerStep)

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

}  // namespace cuae::kern
