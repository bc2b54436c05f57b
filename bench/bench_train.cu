// Training throughput: whole optimizer steps (forward, backward, Adam) of the executor on CUDA,
// in images per second, with the planned memory and the device memory the executor took.
//   - convolutional autoencoders at 1x28x28 (configs/conv.toml's network), 3x128x128 and
//     3x256x256, beside the dense deep autoencoder of configs/deep.toml (the same code width, 30)
//     at batch 256 and 4096;
//   - the VAE of configs/vae.toml (784-400-20) beside the plain autoencoder of the same shape, and
//     the convolutional VAE of configs/conv-vae.toml.
//
// Each case runs with the whole step captured as a CUDA graph and replayed (the default:
// train/<case>/<fp32|tf32>) and, under train/<case>/<fp32|tf32>/eager, with every launch enqueued
// one by one ([train] cuda_graph = false): the difference is the launch overhead the graph saves.
//
// A step is timed on the executor's own stream by synchronising around a run of steps (the loss
// stays on the device: no per-step host sync), median of the repetitions; the steps run on a
// fixed batch already on the device, so data loading is not part of the figure.
//
// --cuae_quick runs the cases bench/peer/train_peer.py trains in PyTorch (the deep autoencoder at
// batch 256 and 4096, the 3x128x128 conv autoencoder; fp32 and TF32), under the same names, so
// scripts/gpu/summarize.py sets each beside its peer, and the eager rows of the batch-256 deep
// autoencoder (the launch-bound case).
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <memory>
#include <string>

#include "bench/harness.cuh"
#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"

namespace cuae::bench {
namespace {

std::string conv_model(int c, int hw, int code, const char* blocks, bool variational = false) {
  return std::string("[model]\ntype = \"conv\"\n") + (variational ? "variational = true\n" : "") + "input = [" + std::to_string(c) + ", " + std::to_string(hw) + ", " +
         std::to_string(hw) + "]\ncode = " + std::to_string(code) +
         "\nactivation = \"relu\"\noutput_activation = \"sigmoid\"\n" + blocks +
         "[loss]\ntype = \"bce\"\n[optimizer]\ntype = \"adam\"\nlr = 1e-3\n";
}

const char* kMnistBlocks =
    "[[model.encoder]]\nchannels = 32\nkernel = 3\nstride = 2\n"
    "[[model.encoder]]\nchannels = 64\nkernel = 3\nstride = 2\n";
// 128x128 and 256x256: four strided blocks (16x down), 32-64-128-128 channels.
const char* kLargeBlocks =
    "[[model.encoder]]\nchannels = 32\nkernel = 3\nstride = 2\n"
    "[[model.encoder]]\nchannels = 64\nkernel = 3\nstride = 2\n"
    "[[model.encoder]]\nchannels = 128\nkernel = 3\nstride = 2\n"
    "[[model.encoder]]\nchannels = 128\nkernel = 3\nstride = 2\n";

struct Case {
  std::string name;
  std::string toml;
  int batch;
  bool quick;  // in the --cuae_quick set: the models bench/peer/train_peer.py trains in PyTorch
  bool quick_eager = false;  // ... and its eager rows too
};

void bm_train(benchmark::State& st, const Case& c, bool tf32, bool graph) {
  try {
    Config cfg = parse_config(c.toml, c.name);
    cfg.train.batch_size = c.batch;
    const auto m = build_autoencoder(cfg, c.batch, GraphMode::Train);
    std::size_t free0 = 0, total = 0;
    CUAE_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    ExecutorOptions o;
    o.device = Device::CUDA;
    o.training = true;
    o.optimizer = cfg.optimizer;
    o.tf32 = tf32;
    o.cuda_graph = graph;
    Executor ex(m.graph, o);
    const std::int64_t d = cfg.model.layers.front();
    const Tensor x = Tensor::from(random_vec(static_cast<std::size_t>(c.batch * d), 7, 0.0f, 1.0f), {c.batch, d}).to(Device::CUDA);
    ex.set_input("x", x);
    for (int i = 0; i < 3; ++i) ex.train_step();  // the second captures the step, the third replays it
    ex.synchronize();
    std::size_t free1 = 0;
    CUAE_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
    const int steps = 10;
    for (auto _ : st) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) ex.train_step();
      ex.synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      st.SetIterationTime(s / steps);
    }
    const float loss = ex.drain_losses().back();
    if (!std::isfinite(loss)) st.SkipWithError("the loss is not finite");
    const MemoryReport& r = ex.memory();
    st.counters["images/s"] = benchmark::Counter(static_cast<double>(c.batch), benchmark::Counter::kIsIterationInvariantRate);
    st.counters["arena_MiB"] = static_cast<double>(r.arena_bytes) / 1048576.0;
    st.counters["params_state_MiB"] = static_cast<double>(r.param_bytes + r.state_bytes) / 1048576.0;
    // What this executor took from the device (arena, parameters, state, cuDNN/cuBLAS workspaces).
    st.counters["device_MiB"] = static_cast<double>(free0 - free1) / 1048576.0;
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

// configs/deep.toml's network: 784-1000-500-250-30, sigmoid hidden layers, linear code, BCE.
const char* kDeepModel =
    "[model]\ntype = \"deep\"\nlayers = [784, 1000, 500, 250, 30]\n"
    "[loss]\ntype = \"bce\"\n[optimizer]\ntype = \"adam\"\n";

void register_all() {
  const std::vector<Case> cases = {
      {"conv_1x28x28", conv_model(1, 28, 30, kMnistBlocks), 256, false},
      {"dense_deep_784", kDeepModel, 256, true, true},
      {"dense_deep_784_b4096", kDeepModel, 4096, true},
      {"conv_3x128x128", conv_model(3, 128, 256, kLargeBlocks), 64, true},
      {"conv_3x256x256", conv_model(3, 256, 256, kLargeBlocks), 16, false},
      {"vae_784_400_20", std::string("[model]\ntype = \"deep\"\nvariational = true\nlayers = [784, 400, 20]\n"
                                     "activation = \"relu\"\n[loss]\ntype = \"bce\"\n[optimizer]\ntype = \"adam\"\n"),
       128, false},
      {"ae_784_400_20", std::string("[model]\ntype = \"deep\"\nlayers = [784, 400, 20]\n"
                                    "activation = \"relu\"\n[loss]\ntype = \"bce\"\n[optimizer]\ntype = \"adam\"\n"),
       128, false},
      {"conv_vae_1x28x28", conv_model(1, 28, 16, kMnistBlocks, true), 256, false},
  };
  for (const Case& c : cases) {
    if (g_opt.quick && !c.quick) continue;
    for (bool graph : {true, false}) {
      if (!graph && g_opt.quick && !c.quick_eager) continue;
      for (bool tf32 : {false, true})
        benchmark::RegisterBenchmark(("train/" + c.name + (tf32 ? "/tf32" : "/fp32") + (graph ? "" : "/eager")).c_str(),
                                     [c, tf32, graph](benchmark::State& st) { bm_train(st, c, tf32, graph); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->Repetitions(g_opt.reps)
            ->ReportAggregatesOnly(true)
            ->MinTime(g_opt.min_time);
    }
  }
}

}  // namespace
}  // namespace cuae::bench

int main(int argc, char** argv) {
  return cuae::bench::bench_main(argc, argv, "bench_train", false, cuae::bench::register_all, [] {});
}
