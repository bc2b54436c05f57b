// cuae reports every failure by throwing cuae::Error: a bad config field, a truncated data file,
// a shape mismatch, a failed CUDA/cuBLAS/cuDNN call (with file:line). The library never exits the
// process and never prints on its own.
#pragma once

#include <stdexcept>
#include <string>

#define CUAE_API __attribute__((visibility("default")))

namespace cuae {

class CUAE_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws cuae::Error("<file>:<line>: <message>").
[[noreturn]] CUAE_API void fail_at(const char* file, int line, const std::string& message);

}  // namespace cuae

// Precondition check that stays on in release builds: a wrong shape or value is a clear error.
#define CUAE_CHECK(cond, msg)                                                            \
  do {                                                                                   \
    if (!(cond)) ::cuae::fail_at(__FILE__, __LINE__, std::string("check failed: ") + (msg)); \
  } while (0)

// A caller's mistake at the public API (a model that is not variational asked for samples, images
// of the wrong width): the message alone, which names what is wrong, without a source location.
#define CUAE_REQUIRE(cond, msg)                 \
  do {                                          \
    if (!(cond)) throw ::cuae::Error((msg));    \
  } while (0)
