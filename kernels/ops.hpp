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
#include <memory>

namespace cuae::kern {

enum class Act : int { Identity = 0, ReLU, LeakyReLU, Sigmoid, Tanh, GELU };
enum class LossKind : int { MSE = 0, L1, BCEWithLogits };
enum class OptKind : int { SGD = 0, Adam, AdamW };
enum class NoiseKind : int { Mask = 0, Gaussian, SaltPepper };
enum class PenaltyKind : int { L1 = 0, KL };
enum class UpsampleKind : int { Nearest = 0, Bilinear };
// What a ConvWorkspace query is asked about.
enum class ConvPass : int { ConvForward = 0, ConvBackward, DeconvForward, DeconvBackward };

// The cuDNN handle of a backend, made at the first convolution (kernels/cuda/cudnn_handle.cu): ops
// that never convolve never load cuDNN, so a machine whose cuDNN engine libraries are missing runs
// every other op, and the first convolution there is a cuae::Error naming the missing library.
struct CudnnSlot {
  void* handle = nullptr;  // cudnnHandle_t once made
  void* stream = nullptr;  // the stream it is bound to
};

// What an op may use besides its arguments. On the CPU backend every pointer is null. The scratch
// and workspace are shared by the ops enqueued on this context's stream: a second stream needs a
// Context (and so a Backend) of its own. device and sm_count are read once, when the backend is
// made, so no launch asks the driver for them.
struct Context {
  void* stream = nullptr;          // cudaStream_t the op is enqueued on
  void* blaslt = nullptr;          // cublasLtHandle_t
  void* workspace = nullptr;       // GEMM workspace (device), owned by the backend
  std::size_t workspace_bytes = 0;
  float* scratch = nullptr;        // reduction partials (device), owned by the backend
  std::size_t scratch_floats = 0;
  CudnnSlot* cudnn = nullptr;      // owned by the backend; the handle is made on first use
  int device = -1;                 // CUDA device ordinal
  int sm_count = 0;                // its multiprocessor count (grid sizing)
  bool tf32 = false;               // allow TF32 tensor cores in fp32 GEMMs and convolutions
  int variant = 0;                 // kernel variant (0 = production choice); the benchmark sweeps it
};

// What an op resolves once and reuses: cuBLASLt descriptors and algorithms, the cuDNN plan of a
// geometry. Whoever repeats a call with the same arguments (an executor step, a benchmark loop)
// owns one OpCache per call site and passes it in the call's arguments; the first call fills it,
// and later calls with the same arguments and context reuse it with no lock, map lookup or driver
// query (a call whose arguments differ from the cached ones resolves afresh). A null cache is
// always correct: the op then resolves through a process-wide cache under a lock, per call. The
// CPU backend ignores it. An OpCache belongs to one call site on one thread at a time.
struct OpCache {
  struct Entry {
    virtual ~Entry() = default;
  };
  static constexpr int kEntries = 8;
  std::unique_ptr<Entry> entries[kEntries];  // the op's own use (e.g. one per GEMM it runs)
};

// The values that change from one training step to the next, in one small block of backend memory
// (device memory on CUDA) that the ops read when they run rather than when they are enqueued, so a
// step captured once as a CUDA graph replays with the current values. step_begin advances it at
// the start of every training step; the host writes lr (set_learning_rate) and rng_step (a forward
// pass at another step) with small stream-ordered copies. Term weights live in a float array
// beside it (the *_at pointers of the term ops).
struct StepScalars {
  std::uint64_t rng_step = 0;  // the step the random ops (corrupt, dropout, reparameterize) draw with
  std::int64_t updates = 0;    // optimizer updates begun: Adam's t during a step
  std::int64_t recorded = 0;   // scalar blocks record_scalars has written (its ring's next slot)
  float lr = 0.0f;             // the learning rate of the update being made
  float beta1 = 0.9f, beta2 = 0.999f;  // Adam's decay rates (constant; step_begin reads them)
  float bias1 = 1.0f, bias2 = 1.0f;    // 1 − β1^t, 1 − β2^t of the update being made
  float momentum = 0.0f;               // SGD's momentum μ (a schedule may change it between steps)
};

// Starts a training step: updates += 1, rng_step = updates, bias1 = 1 − β1^updates and
// bias2 = 1 − β2^updates (each computed in double and rounded once, as OptimizerStep does).
struct StepBegin {
  StepScalars* s = nullptr;
};

// Appends the scalar block src[0, n) to a ring of `capacity` blocks: ring[(recorded mod
// capacity)·n + i] = src[i], then recorded += 1 (both in the StepScalars block). The losses of a
// run of steps stay in backend memory until the host reads the ring (no copy or synchronisation
// inside a step).
struct RecordScalars {
  const float* src = nullptr;
  float* ring = nullptr;
  StepScalars* s = nullptr;
  int n = 0;
  int capacity = 0;
};

// Kernel variants dense_forward/dense_backward have on the CUDA backend (Context::variant <
// kDenseVariants), and the convolution ops (kConvVariants: 0 production choice, 1 cuDNN only,
// 2 our direct kernels wherever they exist); the other ops have one.
constexpr int kDenseVariants = 3;
constexpr int kConvVariants = 3;

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
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
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
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
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
  const float* weight_at = nullptr;  // when set: scale is multiplied by *weight_at, read when the op runs
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
  // When set, lr, momentum and the bias corrections are read from here when the op runs (lr,
  // momentum, bias1, bias2: step_begin's), instead of lr, momentum and 1 − β^step.
  const StepScalars* at = nullptr;
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
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
};

// Inverted dropout: y = x·keep/(1−p) with keep = (u >= p), p in [0, 1). The backward draws the same
// mask again from (seed, step): dx = dy·keep/(1−p) (dx += … when acc_dx). No mask is stored.
struct Dropout {
  const float* x = nullptr;
  float* y = nullptr;
  std::int64_t count = 0;
  float p = 0.0f;
  std::uint64_t seed = 0, step = 0;
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
};
struct DropoutBackward {
  const float* dy = nullptr;
  float* dx = nullptr;
  std::int64_t count = 0;
  float p = 0.0f;
  bool acc_dx = false;
  std::uint64_t seed = 0, step = 0;
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
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
  const float* weight_at = nullptr;  // when set: the weight is read from here when the op runs
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
  const float* weight_at = nullptr;  // when set: the weight is read from here when the op runs
  bool acc_grad_h = false, acc_grad_w = false;
};


// ------------------------------------------------------------------------------------------------
// Convolutional ops. Activations are NHWC (channels last, the layout Hopper's tensor cores and
// cuDNN's fastest kernels read), row-major and contiguous; filters are KRSC ([out channels, filter
// height, filter width, in channels]), so a filter's row is a dense layer's weight row over an
// im2col patch. Index ints are 32-bit (every tensor < 2^31 values).
// ------------------------------------------------------------------------------------------------

// The geometry of one 2-D cross-correlation (PyTorch's Conv2d):
//   x [n, h, w, c]  (*)  filter [k, r, s, c]  ->  y [n, p, q, k]
//   p = (h + 2·pad_h − dil_h·(r − 1) − 1) / stride_h + 1   (floor), likewise q.
// A transposed convolution (deconvolution) is described by the convolution it is the transpose of:
// it maps [n, p, q, k] back to [n, h, w, c] with the same filter, and h, w are given explicitly
// (h − ((p − 1)·stride_h − 2·pad_h + dil_h·(r − 1) + 1) is PyTorch's output_padding, in
// [0, stride_h): a larger one would not map back to p), so every (h, w) that maps to (p, q) is
// expressible. (PyTorch also accepts output_padding up to the dilation; such outputs have no
// convolution they are the transpose of, and are rejected here.)
struct ConvGeom {
  int n = 0, h = 0, w = 0, c = 0;   // convolution input (deconvolution output)
  int k = 0, r = 0, s = 0;          // output channels, filter height, filter width
  int p = 0, q = 0;                 // convolution output (deconvolution input)
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  bool operator==(const ConvGeom&) const = default;
};

// y = act(conv(x, filter) + b)  (b [k] or null; z receives the pre-activation when non-null, as in
// DenseForward; GELU's backward needs it). ws: a workspace of at least the bytes ConvWorkspace
// reports for ConvPass::ConvForward with this geometry (may be null when that is 0).
struct ConvForward {
  ConvGeom g;
  const float* x = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  float* y = nullptr;
  float* z = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  Act act = Act::Identity;
  float slope = 0.01f;
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
};

// Backward of ConvForward: dz = dy ⊙ act'(·) into the [n,p,q,k] workspace dz, db = Σ_{n,p,q} dz,
// dw = ∂/∂filter, dx = ∂/∂x (the transposed convolution of dz). Any of dx, dw, db may be null;
// acc_* add into the destination. y may be null for identity and GELU; z is required for GELU.
struct ConvBackward {
  ConvGeom g;
  const float* dy = nullptr;
  const float* y = nullptr;
  const float* z = nullptr;
  const float* x = nullptr;
  const float* w = nullptr;
  float* dz = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  bool acc_dx = false, acc_dw = false, acc_db = false;
  Act act = Act::Identity;
  float slope = 0.01f;
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
};

// Transposed convolution: y [n,h,w,c] = act(convᵀ(x [n,p,q,k], filter [k,r,s,c]) + b [c]), i.e.
// the data gradient of the convolution g applied to x (PyTorch's ConvTranspose2d with weight
// [k, c, r, s] permuted to [k, r, s, c]). z and ws as for ConvForward (ConvPass::DeconvForward).
struct DeconvForward {
  ConvGeom g;
  const float* x = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  float* y = nullptr;
  float* z = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  Act act = Act::Identity;
  float slope = 0.01f;
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
};

// Backward of DeconvForward: dz = dy ⊙ act' ([n,h,w,c] workspace), db = Σ dz over n,h,w,
// dx [n,p,q,k] = conv(dz, filter) (a forward convolution), dw = ∂/∂filter. Same conventions as
// ConvBackward (ConvPass::DeconvBackward for the workspace).
struct DeconvBackward {
  ConvGeom g;
  const float* dy = nullptr;
  const float* y = nullptr;
  const float* z = nullptr;
  const float* x = nullptr;
  const float* w = nullptr;
  float* dz = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  bool acc_dx = false, acc_dw = false, acc_db = false;
  Act act = Act::Identity;
  float slope = 0.01f;
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
};

// Workspace query: *bytes = the workspace (device memory on CUDA) one call of `pass` with this
// geometry needs. The executor asks at plan time and places the workspace in its arena. On CUDA the
// answer also fixes the algorithm the later calls use for this geometry (kept per geometry), so a
// call must be given at least the bytes it was told.
// No backend ever answers more than this: an algorithm that needs more is not used (FFT-based ones
// can want gigabytes, and the executor reserves the answer in its arena).
constexpr std::size_t kMaxConvWorkspaceBytes = std::size_t{128} << 20;
struct ConvWorkspace {
  ConvGeom g;
  ConvPass pass = ConvPass::ConvForward;
  std::size_t* bytes = nullptr;
};

// Pooling geometry over NHWC: x [n, h, w, c] -> y [n, p, q, c], window r×s, stride, zero padding
// pad (PyTorch: pad <= r/2), p = (h + 2·pad_h − r) / stride_h + 1 (floor), likewise q.
struct PoolGeom {
  int n = 0, h = 0, w = 0, c = 0;
  int p = 0, q = 0;
  int r = 2, s = 2;
  int stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
};

// Max pooling that records where each maximum came from: index[n,p,q,c] = ih·w + iw of the
// maximum within image n, channel c (padding never wins; ties go to the first in row-major window
// order; a NaN wins over any number). index is int32 [n, p, q, c].
struct MaxPool {
  PoolGeom g;
  const float* x = nullptr;
  float* y = nullptr;
  std::int32_t* index = nullptr;
};

// Max unpooling, the scatter of a pooled tensor back to the recorded positions:
//   y[n, ih, iw, c] (+)= Σ over windows (p, q) with index[n,p,q,c] = ih·w + iw of x[n,p,q,c]
// (zero where no window points). With x = dy of a MaxPool this is the pool's backward (dx); with x
// a decoder's feature map it is the unpooling layer's forward. Deterministic (no atomics): each
// output sums its windows in a fixed order. y [n,h,w,c]; acc adds into y.
struct MaxUnpool {
  PoolGeom g;
  const float* x = nullptr;
  const std::int32_t* index = nullptr;
  float* y = nullptr;
  bool acc = false;
};

// Backward of the unpooling layer: dx[n,p,q,c] (+)= dy[n, index[n,p,q,c], c] (a gather).
struct MaxUnpoolBackward {
  PoolGeom g;
  const float* dy = nullptr;
  const std::int32_t* index = nullptr;
  float* dx = nullptr;
  bool acc_dx = false;
};

// Average pooling: y = the window's sum over its divisor, which is r·s when count_include_pad
// (PyTorch's default; padded zeros count) or the number of in-bounds positions otherwise.
struct AvgPool {
  PoolGeom g;
  const float* x = nullptr;
  float* y = nullptr;
  bool count_include_pad = true;
};
// dx (+)= the backward of AvgPool (each window's dy spread evenly over its positions;
// deterministic gather per input position).
struct AvgPoolBackward {
  PoolGeom g;
  const float* dy = nullptr;
  float* dx = nullptr;
  bool count_include_pad = true;
  bool acc_dx = false;
};

// Upsampling x [n, h, w, c] -> y [n, p, q, c] (any p >= 1, q >= 1), PyTorch's F.interpolate with
// scale = in/out per axis:
//   Nearest:  src = min(floor(dst·h/p), h − 1)
//   Bilinear: align_corners = False, src = max((dst + 0.5)·h/p − 0.5, 0), the two neighbours
//             floor(src) and min(floor(src) + 1, h − 1) weighted by the fraction.
// The PoolGeom fields r, s, stride and pad are unused.
struct Upsample {
  PoolGeom g;
  const float* x = nullptr;
  float* y = nullptr;
  UpsampleKind kind = UpsampleKind::Nearest;
};
// dx [n,h,w,c] (+)= the transpose of Upsample applied to dy [n,p,q,c]; deterministic (each input
// position gathers from the outputs that read it, in a fixed order).
struct UpsampleBackward {
  PoolGeom g;
  const float* dy = nullptr;
  float* dx = nullptr;
  UpsampleKind kind = UpsampleKind::Nearest;
  bool acc_dx = false;
};

// ------------------------------------------------------------------------------------------------
// Variational autoencoders: a diagonal Gaussian encoder head q(z|x) = N(μ, diag σ²).
// ------------------------------------------------------------------------------------------------

// Reparameterization. stats [m, 2d]: row i holds μ_i in columns [0, d) and log σ²_i in [d, 2d).
//   z [m, d] = μ + exp(½·log σ²)·ε,   ε_ij the standard normal of element e = i·d + j drawn from
//   (seed, step) exactly as Corrupt's Gaussian noise draws its element e (philox_normal2 on words
//   (0, 1) and (2, 3) of group e/4), so both backends draw the same ε (to a few ulp).
// eps [m, d] receives ε when non-null. With sample = false nothing is drawn: z = μ (the posterior
// mean, for encoding) and eps is not written.
struct Reparameterize {
  const float* stats = nullptr;
  float* z = nullptr;
  float* eps = nullptr;
  int m = 0, d = 0;
  bool sample = true;
  std::uint64_t seed = 0, step = 0;
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
};
// Backward of Reparameterize (sample = true): ε is drawn again from (seed, step), not stored:
//   dstats[i, j]     (+)= dz[i, j]
//   dstats[i, d + j] (+)= dz[i, j]·ε_ij·½·exp(½·log σ²_ij)
// acc adds into dstats (both halves) instead of overwriting.
struct ReparameterizeBackward {
  const float* dz = nullptr;
  const float* stats = nullptr;
  float* dstats = nullptr;
  int m = 0, d = 0;
  bool acc = false;
  std::uint64_t seed = 0, step = 0;
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
};

// KL(N(μ, σ²) ‖ N(0, I)) of each row, value and gradient in one op, stats as above:
//   kl_i      = −½·Σ_j (1 + lv_ij − μ_ij² − exp(lv_ij))
//   loss[0]   = weight/m · Σ_i kl_i                       (written, never accumulated)
//   grad μ_ij (+)= weight/m · μ_ij;   grad lv_ij (+)= weight/m · ½·(exp(lv_ij) − 1)
// grad [m, 2d] may be null (value only); per_row [m] receives kl_i (unweighted) when non-null.
// The sum over rows is deterministic on both backends.
struct GaussianKL {
  const float* stats = nullptr;
  float* grad = nullptr;
  float* loss = nullptr;
  float* per_row = nullptr;
  int m = 0, d = 0;
  float weight = 1.0f;
  const float* weight_at = nullptr;  // when set: the weight is read from here when the op runs
  bool acc_grad = false;
};

// ------------------------------------------------------------------------------------------------
// Restricted Boltzmann machines, trained by contrastive divergence (Hinton & Salakhutdinov 2006).
// W [nh, nv] (a dense layer's weight: the hidden units' rows), visible bias b [nv], hidden bias
// c [nh]. Units:
//   Bernoulli hidden:  p(h=1|v) = σ(v·Wᵀ + c);   Linear hidden: h ~ N(v·Wᵀ + c, 1)
//   Bernoulli visible: p(v=1|h) = σ(h·W + b);    Gaussian visible: v ~ N(h·W + b, 1)
// ------------------------------------------------------------------------------------------------
enum class RbmUnit : int { Bernoulli = 0, Gaussian };  // hidden: Gaussian = the linear unit above

// One CD-k gradient on a batch v0 [m, nv]:
//   positive phase  ph0 = E[h|v0] (probabilities / means); h ~ sample of h|v0
//   k Gibbs steps   t = 1..k: vt = E[v|h] (sample_visible = false: mean-field visible, the
//                   recipe of the 2006 paper's code) or vt ~ sample of v|h (sample_visible = true:
//                   the RBM's Gibbs chain, whose CD-k estimate approaches the log-likelihood
//                   gradient as k grows); pht = E[h|vt]; for t < k, h ~ sample of h|vt
//   gradient        dW = −(ph0ᵀ·v0 − phkᵀ·vk)/m, db = −Σ_rows(v0 − vk)/m, dc = −Σ_rows(ph0 − phk)/m
//                   (the negative of the CD estimate of ∂ log p/∂θ, so an optimizer that descends
//                   follows the likelihood; weight decay and momentum belong to the optimizer)
//   recon[0]        Σ (v0 − v1)² / m: squared reconstruction error per sample after one step
// Samples draw from Philox4x32-10 keyed by (seed, step): Gibbs step t's hidden sample of element e
// (row i, unit j, e = i·nh + j) uses the draw of element e + t·m·nh (uniform for Bernoulli: h = 1
// iff u < p; the Box-Muller normal for linear units); with sample_visible, step t's (t = 1..k)
// visible sample of element e (row i, unit l, e = i·nv + l) uses the draw of element
// k·m·nh + (t − 1)·m·nv + e (the same two kinds of draw). Both backends draw identically.
// ws: a workspace of at least the floats rbm_cd_workspace reports (3·m·nh + m·nv + ...; see the
// implementation). dW, db, dc, recon are written (never accumulated); any may be null.
struct RbmCD {
  const float* v0 = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  const float* c = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  float* dc = nullptr;
  float* recon = nullptr;
  float* ws = nullptr;
  std::size_t ws_floats = 0;
  int m = 0, nv = 0, nh = 0, k = 1;
  RbmUnit visible = RbmUnit::Bernoulli, hidden = RbmUnit::Bernoulli;
  bool sample_visible = false;
  std::uint64_t seed = 0, step = 0;
  const std::uint64_t* step_at = nullptr;  // when set: the step is read from here when the op runs
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
};
// *floats = the workspace RbmCD needs for these sizes.
struct RbmCDWorkspace {
  int m = 0, nv = 0, nh = 0;
  std::size_t* floats = nullptr;
};
// Free energy of each row of v [m, nv] (for monitoring a held-out batch), fe [m]:
//   Bernoulli visible: F(v) = −v·b − Σ_j softplus(x_j),           x = v·Wᵀ + c
//   Gaussian visible:  F(v) = ½‖v − b‖² − Σ_j softplus(x_j)
//   linear hidden:     −Σ_j softplus(x_j) is replaced by −Σ_j (½x_j² ) (up to a constant)
// ws: m·nh floats.
struct RbmFreeEnergy {
  const float* v = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  const float* c = nullptr;
  float* fe = nullptr;
  float* ws = nullptr;
  int m = 0, nv = 0, nh = 0;
  RbmUnit visible = RbmUnit::Bernoulli, hidden = RbmUnit::Bernoulli;
  OpCache* cache = nullptr;        // optional: plans resolved once per call site (see OpCache)
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
  X(step_begin, StepBegin)            \
  X(record_scalars, RecordScalars)    \
  X(corrupt, Corrupt)                 \
  X(dropout_forward, Dropout)         \
  X(dropout_backward, DropoutBackward) \
  X(activity_penalty, ActivityPenalty) \
  X(ksparse_forward, KSparse)         \
  X(ksparse_backward, KSparseBackward) \
  X(contractive_penalty, ContractivePenalty) \
  X(conv_workspace, ConvWorkspace)    \
  X(conv2d_forward, ConvForward)      \
  X(conv2d_backward, ConvBackward)    \
  X(deconv2d_forward, DeconvForward)  \
  X(deconv2d_backward, DeconvBackward) \
  X(max_pool_forward, MaxPool)        \
  X(max_unpool, MaxUnpool)            \
  X(max_unpool_backward, MaxUnpoolBackward) \
  X(avg_pool_forward, AvgPool)        \
  X(avg_pool_backward, AvgPoolBackward) \
  X(upsample_forward, Upsample)       \
  X(upsample_backward, UpsampleBackward) \
  X(reparameterize, Reparameterize)   \
  X(reparameterize_backward, ReparameterizeBackward) \
  X(gaussian_kl, GaussianKL)          \
  X(rbm_cd_workspace, RbmCDWorkspace) \
  X(rbm_cd, RbmCD)                    \
  X(rbm_free_energy, RbmFreeEnergy)

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
const OpTable& cuda_ops();  // a build without CUDA: throws, naming why

// Defines `const OpTable& FN()` holding NS::name for every op of the list (kernels/op_table.cpp,
// kernels/cuda/op_table.cu): a missing or mis-typed op fails to compile or link.
#define CUAE_OP_TABLE_ENTRY_CPU(name, A) &cpu::name,
#define CUAE_OP_TABLE_ENTRY_CUDA(name, A) &cuda::name,
#define CUAE_DEFINE_OP_TABLE(FN, ENTRY)                  \
  const OpTable& FN() {                                  \
    static const OpTable t{CUAE_OP_TABLE(ENTRY)};        \
    return t;                                            \
  }

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
const char* upsample_name(UpsampleKind k);

}  // namespace cuae::kern
