// The public enums of include/cuae/graph.hpp as the op table's (kernels/ops.hpp): the same order,
// so a cast is the whole conversion. Shared by the node files of host/graph/nodes.
#pragma once

#include <sstream>
#include <string>

#include "cuae/graph.hpp"
#include "host/graph/node.hpp"
#include "kernels/ops.hpp"

namespace cuae::detail {

inline kern::Act to_kern(Activation a) { return static_cast<kern::Act>(static_cast<int>(a)); }
inline kern::LossKind to_kern(LossType l) { return static_cast<kern::LossKind>(static_cast<int>(l)); }
inline kern::NoiseKind to_kern(NoiseType n) { return static_cast<kern::NoiseKind>(static_cast<int>(n)); }
inline kern::PenaltyKind to_kern(PenaltyType p) { return static_cast<kern::PenaltyKind>(static_cast<int>(p)); }
inline kern::UpsampleKind to_kern(UpsampleMode m) { return static_cast<kern::UpsampleKind>(static_cast<int>(m)); }

// A number as an ostream prints it ("0.3", not std::to_string's "0.300000"), for describe().
inline std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// A scalar term's weight and role, for describe(): "weight 0.1" or "weight 0.1, metric".
inline std::string term_desc(const Node& n) { return "weight " + num(n.weight) + (n.objective ? "" : ", metric"); }

static_assert(static_cast<int>(Activation::GELU) == static_cast<int>(kern::Act::GELU));
static_assert(static_cast<int>(LossType::BCEWithLogits) == static_cast<int>(kern::LossKind::BCEWithLogits));
static_assert(static_cast<int>(NoiseType::SaltPepper) == static_cast<int>(kern::NoiseKind::SaltPepper));
static_assert(static_cast<int>(PenaltyType::KL) == static_cast<int>(kern::PenaltyKind::KL));
static_assert(static_cast<int>(UpsampleMode::Bilinear) == static_cast<int>(kern::UpsampleKind::Bilinear));

}  // namespace cuae::detail
