// Fills the CUDA op table from the one X-macro list (kernels/ops.hpp); a missing or mis-typed op
// fails to link/compile.
#include "kernels/ops.hpp"

namespace cuae::kern {

const OpTable& cuda_ops() {
#define CUAE_OP_ENTRY(name, A) &cuda::name,
  static const OpTable t{CUAE_OP_TABLE(CUAE_OP_ENTRY)};
#undef CUAE_OP_ENTRY
  return t;
}

}  // namespace cuae::kern
