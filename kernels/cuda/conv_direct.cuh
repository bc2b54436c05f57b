// Our own direct convolution kernels (kernels/cuda/conv_direct.cu), the alternative to cuDNN for
// the forward passes whose channel count is small: the first encoder layer reading a 1- or
// 3-channel image, and the last decoder layer (a transposed convolution) writing one. There
// cuDNN's implicit GEMM has a reduction dimension of r·s·c = 9..27 (or an output dimension of 1..3)
// and pays for a separate bias/activation pass over the output; these kernels write the output
// once, activation applied. Internal header, included only from kernels/cuda/*.cu.
#pragma once

#include <cuda_runtime.h>

#include "kernels/ops.hpp"

namespace cuae::kern::cuda::conv_direct {

// Whether the kernel can run this geometry (its filter slice must fit in 48 KiB of dynamic shared
// memory, which each kernel opts in to before its first launch on a device; its grid within CUDA's
// limits). Any channel count is covered where these hold; which passes use
// the kernel is conv.cu's choice.
bool conv_forward_covers(const ConvGeom& g);
bool deconv_forward_covers(const ConvGeom& g);

// y = act(conv(x, w) + b), z = the pre-activation when non-null, in one kernel. The arguments are
// validated by the caller.
void conv_forward_cuda(const Context& ctx, const ConvForward& a, cudaStream_t stream);
// y = act(convᵀ(x, w) + b), z likewise, in one kernel.
void deconv_forward_cuda(const Context& ctx, const DeconvForward& a, cudaStream_t stream);

}  // namespace cuae::kern::cuda::conv_direct
