// bench_pool: the pooling, unpooling and upsampling ops of the op table on the CUDA backend, at the
// shapes of a convolutional autoencoder's 2x2 pooling stages, against the device-copy ceiling
// measured in the same run.
//
//   ceiling/copy_1GiB                  a 1 GiB device-to-device copy (GB/s, bytes read + written)
//   max_pool_fwd/NxHxWxC               read x [N,H,W,C], write y and index [N,H/2,W/2,C]
//   max_unpool/NxHxWxC                 the pool's backward (or a decoder's unpooling): read the
//                                      pooled values and index, write y [N,H,W,C]
//   max_unpool_bwd/NxHxWxC             the unpooling layer's backward: read the index and dy at it,
//                                      write dx [N,H/2,W/2,C] (dy counted once per pooled value:
//                                      the gather touches a 4-byte word per channel, so this GB/s
//                                      is low by construction)
//   avg_pool_fwd/NxHxWxC               read x, write y (count_include_pad, no padding)
//   avg_pool_bwd/NxHxWxC               read dy [N,H/2,W/2,C], write dx [N,H,W,C]
//   upsample_<kind>_fwd/NxHxWxC        the decoder's 2x upsampling [N,H/2,W/2,C] -> [N,H,W,C]
//                                      (nearest, bilinear): read x, write y
//   upsample_<kind>_bwd/NxHxWxC        read dy [N,H,W,C], write dx [N,H/2,W/2,C]
//
// Shapes (N×H×W×C of the pooled layer's input): 256×28×28×32 (an MNIST-sized batch after the
// first convolution) and 64×128×128×32 (a larger image batch, 128 MiB per activation). All windows
// 2x2, stride 2, no padding; C = 32 keeps every kernel on its float4 path.
//
// Method (bench/harness.cuh, as bench_regularizers): every benchmark first runs its op once on
// NaN-poisoned outputs and compares the result with the CPU reference (cuae::kern::cpu_ops()) on
// the same random inputs; one whose check fails is skipped with the error and never timed. The max
// pool, its index, both unpooling ops and nearest upsampling must agree exactly; average pooling
// and bilinear upsampling to a normalised error of 1e-6 (both backends are written to run the same
// float operations in the same order, so 0 is expected). Timing: 3 warm-up runs, then per
// iteration an L2 flush (outside the timed region) and CUDA events around the op; Google
// Benchmark's manual time; 5 repetitions, aggregates only (read the median). Counters: GB/s
// (compulsory bytes / time), pct_copy (of the copy ceiling measured in the same run), err (the
// normalised error of the check; for indices the fraction that differ).
//
// Output: --benchmark_out=FILE --benchmark_out_format=json; the context carries the device, the
// driver and library versions, the copy ceiling, and CUAE_COMMIT if set. Own flags (removed before
// Google Benchmark sees argv): --cuae_quick (the 256×28×28×32 shape only), --cuae_reps=N,
// --cuae_min_time=SECONDS. Without a GPU the program says so and exits without timing anything.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness.cuh"
#include "kernels/ops.hpp"

namespace {

namespace kern = cuae::kern;
using kern::PoolGeom;
using kern::UpsampleKind;
using namespace cuae::bench;

// =============================================================================================
// cases
// =============================================================================================

// One benchmark's device buffers and CPU reference stay resident while Google Benchmark calls it
// again (repetitions, iteration sizing); one case at a time.
struct Case {
  std::string key;
  virtual ~Case() = default;
};
std::unique_ptr<Case> g_case;

template <class C, class Make>
C& resident(const std::string& key, Make make) {
  if (!g_case || g_case->key != key) {
    g_case.reset();
    std::unique_ptr<C> c = make();
    c->key = key;
    g_case = std::move(c);
  }
  return static_cast<C&>(*g_case);
}

enum class Op { MaxPool, MaxUnpool, MaxUnpoolBwd, AvgPool, AvgPoolBwd, UpFwd, UpBwd };

struct Shape {
  int n, h, w, c;
  std::string str() const {
    return std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
  }
};

// The 2x2, stride-2 pool of a shape; the upsampling that undoes it maps [n, h/2, w/2, c] (its h, w)
// to [n, h, w, c] (its p, q).
PoolGeom pool_geom(const Shape& s) {
  PoolGeom g;
  g.n = s.n, g.h = s.h, g.w = s.w, g.c = s.c;
  g.r = g.s = 2, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 0;
  g.p = s.h / 2, g.q = s.w / 2;
  return g;
}
PoolGeom up_geom(const Shape& s) {
  PoolGeom g;
  g.n = s.n, g.c = s.c, g.h = s.h / 2, g.w = s.w / 2, g.p = s.h, g.q = s.w;
  return g;
}

std::size_t in_count(const PoolGeom& g) { return static_cast<std::size_t>(g.n) * g.h * g.w * g.c; }
std::size_t out_count(const PoolGeom& g) { return static_cast<std::size_t>(g.n) * g.p * g.q * g.c; }

// src → dst through one op; idx is the max pool's index (written by max_pool, read by the
// unpooling ops).
struct PoolCase : Case {
  DevBuf src, dst;
  DevIndex idx;
  std::vector<float> want;
  std::vector<std::int32_t> want_idx;  // max_pool only
  std::function<void()> f;             // the CUDA op
};

PoolCase& make_case(const std::string& key, Op op, const Shape& s, UpsampleKind kind) {
  return resident<PoolCase>(key, [&] {
    auto c = std::make_unique<PoolCase>();
    const PoolGeom pg = pool_geom(s), ug = up_geom(s);
    const std::size_t big = in_count(pg), small = out_count(pg);
    const kern::Context cpu{};
    // The index of a real pool of random data, for the unpooling ops.
    std::vector<std::int32_t> hidx;
    if (op == Op::MaxPool || op == Op::MaxUnpool || op == Op::MaxUnpoolBwd) {
      const auto hx = random_vec(big, 101, -1.0f, 1.0f);
      std::vector<float> hy(small);
      hidx.resize(small);
      kern::MaxPool a;
      a.g = pg, a.x = hx.data(), a.y = hy.data(), a.index = hidx.data();
      kern::cpu_ops().max_pool_forward(cpu, a);
      if (op == Op::MaxPool) {
        c->src = DevBuf(big), c->dst = DevBuf(small), c->idx = DevIndex(small);
        upload(c->src, hx);
        c->want = std::move(hy), c->want_idx = hidx;
        a.x = c->src.get(), a.y = c->dst.get(), a.index = c->idx.get();
        c->f = [a] { kern::cuda_ops().max_pool_forward(env().ctx(), a); };
        return c;
      }
      c->idx = DevIndex(small);
      upload(c->idx, hidx);
    }
    switch (op) {
      case Op::MaxPool: break;  // above
      case Op::MaxUnpool: {
        const auto hv = random_vec(small, 102, -1.0f, 1.0f);
        c->want.resize(big);
        kern::MaxUnpool a;
        a.g = pg, a.x = hv.data(), a.index = hidx.data(), a.y = c->want.data();
        kern::cpu_ops().max_unpool(cpu, a);
        c->src = DevBuf(small), c->dst = DevBuf(big);
        upload(c->src, hv);
        a.x = c->src.get(), a.index = c->idx.get(), a.y = c->dst.get();
        c->f = [a] { kern::cuda_ops().max_unpool(env().ctx(), a); };
        break;
      }
      case Op::MaxUnpoolBwd: {
        const auto hdy = random_vec(big, 103, -1.0f, 1.0f);
        c->want.resize(small);
        kern::MaxUnpoolBackward a;
        a.g = pg, a.dy = hdy.data(), a.index = hidx.data(), a.dx = c->want.data();
        kern::cpu_ops().max_unpool_backward(cpu, a);
        c->src = DevBuf(big), c->dst = DevBuf(small);
        upload(c->src, hdy);
        a.dy = c->src.get(), a.index = c->idx.get(), a.dx = c->dst.get();
        c->f = [a] { kern::cuda_ops().max_unpool_backward(env().ctx(), a); };
        break;
      }
      case Op::AvgPool: {
        const auto hx = random_vec(big, 104, -1.0f, 1.0f);
        c->want.resize(small);
        kern::AvgPool a;
        a.g = pg, a.x = hx.data(), a.y = c->want.data();
        kern::cpu_ops().avg_pool_forward(cpu, a);
        c->src = DevBuf(big), c->dst = DevBuf(small);
        upload(c->src, hx);
        a.x = c->src.get(), a.y = c->dst.get();
        c->f = [a] { kern::cuda_ops().avg_pool_forward(env().ctx(), a); };
        break;
      }
      case Op::AvgPoolBwd: {
        const auto hdy = random_vec(small, 105, -1.0f, 1.0f);
        c->want.resize(big);
        kern::AvgPoolBackward a;
        a.g = pg, a.dy = hdy.data(), a.dx = c->want.data();
        kern::cpu_ops().avg_pool_backward(cpu, a);
        c->src = DevBuf(small), c->dst = DevBuf(big);
        upload(c->src, hdy);
        a.dy = c->src.get(), a.dx = c->dst.get();
        c->f = [a] { kern::cuda_ops().avg_pool_backward(env().ctx(), a); };
        break;
      }
      case Op::UpFwd: {
        const auto hx = random_vec(in_count(ug), 106, -1.0f, 1.0f);
        c->want.resize(out_count(ug));
        kern::Upsample a;
        a.g = ug, a.x = hx.data(), a.y = c->want.data(), a.kind = kind;
        kern::cpu_ops().upsample_forward(cpu, a);
        c->src = DevBuf(in_count(ug)), c->dst = DevBuf(out_count(ug));
        upload(c->src, hx);
        a.x = c->src.get(), a.y = c->dst.get();
        c->f = [a] { kern::cuda_ops().upsample_forward(env().ctx(), a); };
        break;
      }
      case Op::UpBwd: {
        const auto hdy = random_vec(out_count(ug), 107, -1.0f, 1.0f);
        c->want.resize(in_count(ug));
        kern::UpsampleBackward a;
        a.g = ug, a.dy = hdy.data(), a.dx = c->want.data(), a.kind = kind;
        kern::cpu_ops().upsample_backward(cpu, a);
        c->src = DevBuf(out_count(ug)), c->dst = DevBuf(in_count(ug));
        upload(c->src, hdy);
        a.dy = c->src.get(), a.dx = c->dst.get();
        c->f = [a] { kern::cuda_ops().upsample_backward(env().ctx(), a); };
        break;
      }
    }
    return c;
  });
}

// Compulsory bytes of one call: every tensor read or written once (the large side is
// [n, h, w, c], the small one [n, h/2, w/2, c]; indices are 4 bytes).
double bytes_of(Op op, const Shape& s) {
  const double big = 4.0 * static_cast<double>(in_count(pool_geom(s)));
  const double small = 4.0 * static_cast<double>(out_count(pool_geom(s)));
  switch (op) {
    case Op::MaxPool: return big + 2 * small;       // x; y and index
    case Op::MaxUnpool: return 2 * small + big;     // values and index; y
    case Op::MaxUnpoolBwd: return 3 * small;        // index, dy at it; dx
    case Op::AvgPool: return big + small;
    case Op::AvgPoolBwd: return small + big;
    case Op::UpFwd: return small + big;
    case Op::UpBwd: return big + small;
  }
  return 0;
}

bool exact_op(Op op, UpsampleKind kind) {
  if (op == Op::AvgPool || op == Op::AvgPoolBwd) return false;
  if (op == Op::UpFwd || op == Op::UpBwd) return kind == UpsampleKind::Nearest;
  return true;
}

void bm_pool(benchmark::State& st, const std::string& name, Op op, Shape s, UpsampleKind kind) {
  PoolCase* cp = nullptr;
  try {
    cp = &make_case(name, op, s, kind);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  PoolCase& c = *cp;
  const auto f = [&c] { c.f(); };
  const auto check = [&c, op, kind]() -> Check {
    poison(c.dst);
    if (op == Op::MaxPool) poison(c.idx);
    c.f();
    const bool exact = exact_op(op, kind);
    Checker ck{exact ? 0.0 : 1e-6};
    if (exact) ck.exact("out", download(c.dst), c.want);
    else ck.compare("out", download(c.dst), c.want);
    if (op == Op::MaxPool) ck.exact("index", download(c.idx), c.want_idx);
    return ck.result;
  };
  run(st, name, check, f, Work{bytes_of(op, s), 0});
}

// =============================================================================================
// registration and main
// =============================================================================================

void register_all() {
  register_ceilings(false);
  std::vector<Shape> shapes = {{256, 28, 28, 32}};
  if (!g_opt.quick) shapes.push_back({64, 128, 128, 32});
  const std::pair<const char*, Op> pool_ops[] = {{"max_pool_fwd", Op::MaxPool},     {"max_unpool", Op::MaxUnpool},
                                                 {"max_unpool_bwd", Op::MaxUnpoolBwd}, {"avg_pool_fwd", Op::AvgPool},
                                                 {"avg_pool_bwd", Op::AvgPoolBwd}};
  for (const Shape& s : shapes) {
    for (const auto& [label, op] : pool_ops) {
      const std::string name = std::string(label) + "/" + s.str();
      reg(name, [=](benchmark::State& st) { bm_pool(st, name, op, s, UpsampleKind::Nearest); });
    }
    for (UpsampleKind kind : {UpsampleKind::Nearest, UpsampleKind::Bilinear}) {
      for (Op op : {Op::UpFwd, Op::UpBwd}) {
        const std::string name = std::string("upsample_") + kern::upsample_name(kind) +
                                 (op == Op::UpFwd ? "_fwd/" : "_bwd/") + s.str();
        reg(name, [=](benchmark::State& st) { bm_pool(st, name, op, s, kind); });
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main(argc, argv, "bench_pool", false, register_all, [] { g_case.reset(); });
}
