// Reading the loss terms back: every training step's record_scalars launch appends the scalar
// block to a ring in backend memory; the host copies the unread blocks when asked (or when the
// ring is full) and hands out each step's objective and each term's sums.
#include "host/graph/executor_impl.hpp"

#include <utility>

namespace cuae {

void Executor::Impl::make_room() {
  if (n_scalars > 0 && recorded - read_upto == kLossRing) read_ring();  // every 1024 steps at most
}

void Executor::Impl::read_ring() {
  if (recorded == read_upto) return;
  std::vector<float> host(static_cast<std::size_t>(kLossRing * n_scalars));
  be->copy_to_host(host.data(), ring, host.size() * sizeof(float));
  const auto& losses = comp->loss_bufs();
  term_sums.resize(losses.size(), 0.0);
  for (std::int64_t k = read_upto; k < recorded; ++k) {
    const float* block = host.data() + (k % kLossRing) * n_scalars;
    drained.push_back(loss_of(block));
    for (std::size_t t = 0; t < losses.size(); ++t) term_sums[t] += block[buf(losses[t]).offset];
    ++term_steps;
  }
  read_upto = recorded;
}

std::vector<float> Executor::drain_losses() {
  Impl& I = *impl_;
  I.read_ring();
  return std::exchange(I.drained, {});
}

std::vector<std::string> Executor::term_names() const {
  std::vector<std::string> names;
  for (const detail::Node* t : impl_->comp->terms())
    if (t->objective) names.push_back(t->name);
  return names;
}

std::vector<double> Executor::drain_term_sums(std::int64_t* steps) {
  Impl& I = *impl_;
  I.read_ring();
  if (steps) *steps = std::exchange(I.term_steps, 0);
  std::vector<double> sums = std::exchange(I.term_sums, {});
  sums.resize(I.comp->loss_bufs().size(), 0.0);
  return sums;
}

std::vector<float> Executor::last_terms() {
  Impl& I = *impl_;
  std::vector<float> host(static_cast<std::size_t>(I.n_scalars));
  if (!host.empty()) I.be->copy_to_host(host.data(), I.scalars, host.size() * sizeof(float));
  std::vector<float> terms;
  for (int l : I.comp->loss_bufs()) terms.push_back(host[static_cast<std::size_t>(I.buf(l).offset)]);
  return terms;
}

float Executor::last_loss() {
  Impl& I = *impl_;
  CUAE_CHECK(!I.comp->loss_bufs().empty(), "the graph has no loss term");
  std::vector<float> host(static_cast<std::size_t>(I.n_scalars));
  I.be->copy_to_host(host.data(), I.scalars, host.size() * sizeof(float));
  return I.loss_of(host.data());
}

}  // namespace cuae
