// Fills the CUDA op table from the one X-macro list (kernels/ops.hpp); a missing or mis-typed op
// fails to link/compile.
#include "kernels/ops.hpp"

namespace cuae::kern {

CUAE_DEFINE_OP_TABLE(cuda_ops, CUAE_OP_TABLE_ENTRY_CUDA)

}  // namespace cuae::kern
