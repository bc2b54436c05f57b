// Fills the CPU op table from the one X-macro list (the CUDA table: kernels/cuda/op_table.cu); a
// missing or mis-typed op fails to link/compile.
#include "kernels/ops.hpp"

namespace cuae::kern {

CUAE_DEFINE_OP_TABLE(cpu_ops, CUAE_OP_TABLE_ENTRY_CPU)

// cuda_ops() is filled in kernels/cuda/op_table.cu (a build without CUDA has none).

const char* act_name(Act a) {
  switch (a) {
    case Act::Identity: return "identity";
    case Act::ReLU: return "relu";
    case Act::LeakyReLU: return "leaky_relu";
    case Act::Sigmoid: return "sigmoid";
    case Act::Tanh: return "tanh";
    case Act::GELU: return "gelu";
  }
  return "?";
}

const char* loss_name(LossKind k) {
  switch (k) {
    case LossKind::MSE: return "mse";
    case LossKind::L1: return "l1";
    case LossKind::BCEWithLogits: return "bce";
  }
  return "?";
}

const char* noise_name(NoiseKind k) {
  switch (k) {
    case NoiseKind::Mask: return "mask";
    case NoiseKind::Gaussian: return "gaussian";
    case NoiseKind::SaltPepper: return "salt_pepper";
  }
  return "?";
}

const char* penalty_name(PenaltyKind k) {
  switch (k) {
    case PenaltyKind::L1: return "l1";
    case PenaltyKind::KL: return "kl";
  }
  return "?";
}

const char* upsample_name(UpsampleKind k) {
  switch (k) {
    case UpsampleKind::Nearest: return "nearest";
    case UpsampleKind::Bilinear: return "bilinear";
  }
  return "?";
}

}  // namespace cuae::kern
