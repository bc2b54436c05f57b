// The runtime around the kernels: what a backend makes and when (cuDNN only at the first
// convolution, the device's properties once), how tensor copies are ordered with the backends'
// streams, the per-call-site plan caches, and the cuBLASLt bias rule. The CUDA tests skip without
// a GPU; the rest run everywhere.
#include <gtest/gtest.h>

#if CUAE_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"
#if CUAE_WITH_CUDA
#include "kernels/cuda/cudnn_handle.hpp"
#include "kernels/cuda/gemm.cuh"
#endif
#include "kernels/ops.hpp"

namespace cuae {
namespace {

using test::DeviceBuffer;

// The CUDA libraries' own rules, checked without a GPU, where the build has them.
#if CUAE_WITH_CUDA
#define CUAE_SKIP_WITHOUT_CUDA_BUILD()
#else
#define CUAE_SKIP_WITHOUT_CUDA_BUILD() GTEST_SKIP() << "cuae was built without CUDA (CUAE_CUDA=OFF)"
#endif

// ---- cuDNN loading (no GPU needed) ----------------------------------------------------------

TEST(CudnnLoading, AMissingLibraryIsNamedWithTheReason) {
  CUAE_SKIP_WITHOUT_CUDA_BUILD();
#if CUAE_WITH_CUDA
  const std::string problem = kern::cuda::cudnn_load_problem({"libcudnn_graph.so.9", "libcudnn_no_such_engine.so.9"});
  EXPECT_NE(problem.find("libcudnn_no_such_engine.so.9"), std::string::npos) << problem;
  EXPECT_NE(problem.find("cannot be loaded"), std::string::npos) << problem;
#endif
}

TEST(CudnnLoading, TheBuildsCudnnHasItsEngineLibraries) {
  CUAE_SKIP_WITHOUT_CUDA_BUILD();
#if CUAE_WITH_CUDA
  // The build links cuDNN 9, so the libraries its loader opens must be there too; a machine where
  // this fails would abort at the first convolution without the check in cudnn_handle.
  EXPECT_EQ(kern::cuda::cudnn_load_problem(kern::cuda::cudnn_engine_libraries()), "");
#endif
}

TEST(CudaStatus, AvailabilityAndItsReasonAgree) {
  EXPECT_EQ(cuda_available(), cuda_unavailable_reason().empty()) << cuda_unavailable_reason();
}

// ---- cuBLASLt's bias rule (no GPU needed) -----------------------------------------------------

TEST(GemmBias, EpilogueOnlyForSixteenByteAlignedBiases) {
  CUAE_SKIP_WITHOUT_CUDA_BUILD();
#if CUAE_WITH_CUDA
  alignas(256) float buf[64] = {};
  EXPECT_TRUE(kern::cuda::blas::bias_epilogue_allowed(buf));
  EXPECT_TRUE(kern::cuda::blas::bias_epilogue_allowed(buf + 4));
  // An RBM's hidden bias sits at param + nh·nv + nv: for widths 784-1000-499 that is 4 bytes past
  // a 16-byte boundary.
  EXPECT_FALSE(kern::cuda::blas::bias_epilogue_allowed(buf + 1));
  EXPECT_FALSE(kern::cuda::blas::bias_epilogue_allowed(buf + 2));
  EXPECT_FALSE(kern::cuda::blas::bias_epilogue_allowed(buf + 3));
  EXPECT_FALSE(kern::cuda::blas::bias_epilogue_allowed(nullptr));
#endif
}

// ---- the CUDA backend -------------------------------------------------------------------------

kern::ConvGeom small_conv() {
  kern::ConvGeom g;
  g.n = 2, g.h = 5, g.w = 5, g.c = 3, g.k = 4, g.r = 3, g.s = 3, g.p = 3, g.q = 3;
  return g;
}

TEST(BackendCuda, MakesCudnnOnlyAtTheFirstConvolution) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
  ASSERT_NE(be.ctx().cudnn, nullptr);
  EXPECT_EQ(be.ctx().cudnn->handle, nullptr) << "cuDNN was loaded before any convolution";
  // A dense layer and a loss: cuBLASLt and our kernels only.
  DeviceBuffer x(be, 6 * 5), w(be, 4 * 5), y(be, 6 * 4), l(be, 1);
  x.upload(test::uniform(30, 1));
  w.upload(test::uniform(20, 2));
  kern::DenseForward d;
  d.x = x.data(), d.w = w.data(), d.y = y.data(), d.m = 6, d.n = 4, d.k = 5, d.act = kern::Act::Sigmoid;
  be.ops().dense_forward(be.ctx(), d);
  kern::Loss loss;
  loss.pred = y.data(), loss.target = y.data(), loss.loss = l.data(), loss.count = 24;
  be.ops().loss(be.ctx(), loss);
  be.synchronize();
  EXPECT_EQ(be.ctx().cudnn->handle, nullptr) << "a dense layer made the cuDNN handle";
  std::size_t bytes = 0;
  kern::ConvWorkspace q;
  q.g = small_conv();
  q.bytes = &bytes;
  be.ops().conv_workspace(be.ctx(), q);
  EXPECT_NE(be.ctx().cudnn->handle, nullptr);
  EXPECT_EQ(be.ctx().cudnn->stream, be.ctx().stream) << "the handle is not bound to the backend's stream";
}

TEST(BackendCuda, ContextCarriesTheDevicesProperties) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
#if CUAE_WITH_CUDA
  int dev = -1, sms = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), cudaSuccess);
  EXPECT_EQ(be.ctx().device, dev);
  EXPECT_EQ(be.ctx().sm_count, sms);
#endif
}

TEST(BackendCuda, AContextNotMadeByABackendIsAnError) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
  kern::Context bare = be.ctx();
  bare.sm_count = 0;  // as a hand-made Context would have it
  DeviceBuffer x(be, 16), y(be, 16);
  kern::Activation a;
  a.x = x.data(), a.y = y.data(), a.count = 16;
  EXPECT_THROW(be.ops().activation_forward(bare, a), Error);
}

// ---- tensor copies and the backends' streams --------------------------------------------------

// Enqueues `passes` copies of src into dst on the backend's stream (activation identity): tens of
// milliseconds of device work on 2^24 floats, so a copy that does not wait for it reads stale data.
void busy_copy(Backend& be, const float* src, float* dst, std::int64_t count, int passes) {
  kern::Activation a;
  a.x = src, a.y = dst, a.count = count, a.act = kern::Act::Identity;
  for (int i = 0; i < passes; ++i) be.ops().activation_forward(be.ctx(), a);
}

// How many of a tensor's values differ from v (read back through values()).
std::int64_t count_other(const Tensor& t, float v) {
  std::int64_t n = 0;
  for (float x : t.values()) n += x != v;
  return n;
}

constexpr std::int64_t kBusyN = std::int64_t{1} << 24;

TEST(TensorCuda, ReadsWaitForWorkOnTheBackendsStream) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
  Tensor src = Tensor::from(std::vector<float>(kBusyN, 3.0f), {kBusyN}).to(Device::CUDA);
  Tensor dst = Tensor::zeros({kBusyN}, Device::CUDA);
  busy_copy(be, src.f32(), dst.f32(), kBusyN, 200);
  // No synchronisation of the backend here: values() must order itself after the copies.
  EXPECT_EQ(count_other(dst, 3.0f), 0) << "values() overtook work still running on the backend's stream";
}

TEST(TensorCuda, WritesLandBeforeTheBackendReadsThem) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
  Tensor src = Tensor::zeros({kBusyN}, Device::CUDA);
  Tensor dst = Tensor::zeros({kBusyN}, Device::CUDA);
  // The backend reads src (many times, so the reads are still going on), then a host write to src
  // follows: it must not land while those reads run, and the reads after it must see it.
  busy_copy(be, src.f32(), dst.f32(), kBusyN, 100);
  src.copy_from(Tensor::from(std::vector<float>(kBusyN, 5.0f), {kBusyN}));  // pageable host memory
  busy_copy(be, src.f32(), dst.f32(), kBusyN, 1);
  be.synchronize();
  EXPECT_EQ(count_other(dst, 5.0f), 0) << "the backend read src before the host-to-device copy had landed";
}

// ---- per-call-site plan caches -----------------------------------------------------------------

// One OpCache reused across calls whose shapes and pointers change must give what uncached calls
// give: a stale plan (a GEMM shape, a bias pointer) would compute the wrong thing or fault.
TEST(OpCacheCuda, ACallSiteWithNewArgumentsResolvesAfresh) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend be(Device::CUDA);
  kern::OpCache cache;
  struct Shape3 {
    int m, n, k;
  };
  const Shape3 shapes[] = {{7, 33, 5}, {7, 33, 5}, {64, 128, 32}, {9, 17, 3}, {64, 128, 32}};
  int i = 0;
  for (const Shape3& s : shapes) {
    for (bool bias_off : {false, true}) {
      DeviceBuffer x(be, static_cast<std::size_t>(s.m) * s.k), w(be, static_cast<std::size_t>(s.n) * s.k),
          b(be, static_cast<std::size_t>(s.n) + 1), y0(be, static_cast<std::size_t>(s.m) * s.n),
          y1(be, static_cast<std::size_t>(s.m) * s.n);
      x.upload(test::uniform(x.size(), 10 + i));
      w.upload(test::uniform(w.size(), 20 + i));
      b.upload(test::uniform(b.size(), 30 + i));
      ++i;
      kern::DenseForward d;
      d.x = x.data(), d.w = w.data(), d.b = b.data() + (bias_off ? 1 : 0);
      d.m = s.m, d.n = s.n, d.k = s.k, d.act = kern::Act::ReLU;
      d.y = y0.data();
      be.ops().dense_forward(be.ctx(), d);
      d.y = y1.data();
      d.cache = &cache;
      be.ops().dense_forward(be.ctx(), d);
      be.ops().dense_forward(be.ctx(), d);  // a cache hit
      be.synchronize();
      EXPECT_EQ(y1.download(), y0.download()) << "m" << s.m << " n" << s.n << " k" << s.k << (bias_off ? " bias+1" : "");
    }
  }
}

}  // namespace
}  // namespace cuae
