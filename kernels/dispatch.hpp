// Run-time enums to compile-time constants, so a loop (a CUDA kernel, a CPU pass) is instantiated
// per case and its inner loop carries no switch. Shared by both backends.
#pragma once

#include <string>
#include <type_traits>

#include "cuae/error.hpp"
#include "kernels/ops.hpp"

namespace cuae::kern {

// Calls f(std::integral_constant<Act, A>{}) for the run-time activation a, so each kernel is
// instantiated per activation and its inner loop carries no switch.
template <class F>
void dispatch_act(Act a, F&& f) {
  switch (a) {
    case Act::Identity: f(std::integral_constant<Act, Act::Identity>{}); return;
    case Act::ReLU: f(std::integral_constant<Act, Act::ReLU>{}); return;
    case Act::LeakyReLU: f(std::integral_constant<Act, Act::LeakyReLU>{}); return;
    case Act::Sigmoid: f(std::integral_constant<Act, Act::Sigmoid>{}); return;
    case Act::Tanh: f(std::integral_constant<Act, Act::Tanh>{}); return;
    case Act::GELU: f(std::integral_constant<Act, Act::GELU>{}); return;
  }
  ::cuae::fail_at(__FILE__, __LINE__, "unknown activation " + std::to_string(static_cast<int>(a)));
}

// Calls f(std::bool_constant<b>{}) for the run-time flag b (a kernel template per flag value).
template <class F>
void dispatch_bool(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

template <class F>
void dispatch_loss(LossKind k, F&& f) {
  switch (k) {
    case LossKind::MSE: f(std::integral_constant<LossKind, LossKind::MSE>{}); return;
    case LossKind::L1: f(std::integral_constant<LossKind, LossKind::L1>{}); return;
    case LossKind::BCEWithLogits: f(std::integral_constant<LossKind, LossKind::BCEWithLogits>{}); return;
  }
  ::cuae::fail_at(__FILE__, __LINE__, "unknown loss kind " + std::to_string(static_cast<int>(k)));
}

}  // namespace cuae::kern
