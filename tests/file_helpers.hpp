// Helpers for tests that read and write files (test_io, test_data): a temporary directory per
// test, byte-level file access for building malformed files, and an assertion that a call throws
// cuae::Error with a message naming what it should (CUAE_SHOW_ERRORS=1 prints the messages).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuae/error.hpp"

namespace cuae::test {

using Bytes = std::vector<unsigned char>;

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cuae_test_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  const std::filesystem::path& path() const { return path_; }
  // Names of the entries in the directory, sorted (to show that no temporary was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f.good()) throw std::runtime_error("cannot write test file " + path);
}

inline void write_text(const std::string& path, const std::string& s) { write_bytes(path, Bytes(s.begin(), s.end())); }

inline Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read test file " + path);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs fn and expects a cuae::Error whose message contains every one of `parts` (file names,
// field names, counts). Anything else (no exception, another exception type) fails the test.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const cuae::Error& e) {
    const std::string msg = e.what();
    // CUAE_SHOW_ERRORS=1 prints every expected message, to read them as a user would.
    if (const char* show = std::getenv("CUAE_SHOW_ERRORS"); show && *show) std::printf("  error: %s\n", msg.c_str());
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks \"" << p << "\": " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-cuae exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "no exception thrown (expected an error mentioning \"" << (parts.empty() ? "" : parts.front()) << "\")";
}

}  // namespace cuae::test
