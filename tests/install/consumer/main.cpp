// Builds a tiny autoencoder with the public API, trains it for a few hundred steps on the CPU
// backend and checks that the loss fell. Exit code 0 only if it did.
#include <cuae/cuae.hpp>

#include <cstdio>
#include <random>

int main() {
  cuae::Graph g;
  const int batch = 32, d = 16, code = 4;
  auto x = g.input("x", {batch, d});
  auto w = g.param("enc.weight", {code, d}, cuae::Init::glorot_uniform(d, code));
  auto b = g.param("enc.bias", {code}, cuae::Init::zeros(), false);
  auto c = g.param("dec.bias", {d}, cuae::Init::zeros(), false);
  auto h = g.dense(x, w, b, cuae::Activation::Tanh);
  auto y = g.dense(h, w, c, cuae::Activation::Identity, /*w_transposed=*/true);
  g.loss(y, x, cuae::LossType::MSE, cuae::Reduction::Mean);

  // Data on a 4-dimensional subspace: a 4-unit code can reconstruct it.
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> basis(4 * d), data(batch * d, 0.0f);
  for (auto& v : basis) v = n(rng) * 0.3f;
  for (int i = 0; i < batch; ++i)
    for (int k = 0; k < 4; ++k) {
      const float a = n(rng);
      for (int j = 0; j < d; ++j) data[i * d + j] += a * basis[k * d + j];
    }

  cuae::ExecutorOptions opt;
  opt.device = cuae::Device::CPU;
  opt.training = true;
  opt.optimizer.lr = 1e-2f;
  cuae::Executor ex(g, opt);
  ex.set_input("x", cuae::Tensor::from(data, {batch, d}));
  for (int s = 0; s < 300; ++s) ex.train_step();
  const auto losses = ex.drain_losses();
  std::printf("cuae %s: loss %.5f -> %.5f over %zu steps, arena %zu bytes\n", cuae::version(), losses.front(),
              losses.back(), losses.size(), ex.memory().arena_bytes);
  return losses.back() < 0.2f * losses.front() ? 0 : 1;
}
