// Every input the fuzzers start from (fuzz/corpus/<reader>/) and every finding kept as a
// regression (fuzz/regressions/<reader>/), through the reader it was found in: each must be read,
// or refused with cuae::Error — no other exception, no crash (and, in the sanitizer build, no
// sanitizer report). The fuzzers themselves run in scripts/fuzz.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/config.hpp"
#include "cuae/data.hpp"
#include "cuae/images.hpp"
#include "cuae/compress.hpp"
#include "cuae/npy.hpp"
#include "cuae/safetensors.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The input as a file with the reader's extension, as the fuzzer hands it over.
fs::path as_file(const std::string& bytes, const std::string& ext) {
  const fs::path p = fs::temp_directory_path() / ("cuae_fuzz_regression_" + std::to_string(::getpid()) + ext);
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

void decode(const std::string& bytes, const char* ext) {
  if (bytes.empty()) return;
  ImageSpec spec;  // the fuzzer's spec byte, then the file
  spec.channels = (bytes[0] & 1) ? 3 : 1;
  spec.height = 16;
  spec.width = 12;
  spec.fit = (bytes[0] & 2) ? ImageSpec::Fit::Resize : ImageSpec::Fit::Crop;
  (void)decode_image(as_file(bytes.substr(1), ext).string(), spec);
}

const std::map<std::string, std::function<void(const std::string&)>>& readers() {
  static const std::map<std::string, std::function<void(const std::string&)>> r{
      {"idx",
       [](const std::string& b) {  // as fuzz/fuzz_idx.cpp: the array, then the same file as an image set
         const std::string path = as_file(b, ".idx").string();
         try {
           (void)read_idx(path);
         } catch (const Error&) {
         }
         (void)load_idx_dataset(path, "");
       }},
      {"cifar", [](const std::string& b) { (void)load_cifar10({as_file(b, ".bin").string()}); }},
      {"safetensors", [](const std::string& b) { (void)load_safetensors(as_file(b, ".safetensors").string()); }},
      {"npy", [](const std::string& b) { (void)load_npy(as_file(b, ".npy").string()); }},
      {"cuaez", [](const std::string& b) { (void)decode_compressed({b.begin(), b.end()}, "fuzz.cuaez"); }},
      {"config", [](const std::string& b) { (void)parse_config(b, "fuzz.toml"); }},
      {"png", [](const std::string& b) { decode(b, ".png"); }},
      {"jpeg", [](const std::string& b) { decode(b, ".jpg"); }},
  };
  return r;
}

TEST(FuzzRegressions, EveryKeptInputIsReadOrRefusedCleanly) {
  int inputs = 0;
  for (const char* set : {"fuzz/corpus", "fuzz/regressions"}) {
    const fs::path root = test::source_path(set);
    ASSERT_TRUE(fs::is_directory(root)) << root;
    for (const auto& [reader, read] : readers()) {
      const fs::path dir = root / reader;
      if (!fs::is_directory(dir)) continue;
      for (const auto& e : fs::directory_iterator(dir)) {
        if (!e.is_regular_file() || e.path().filename().string()[0] == '.') continue;
        ++inputs;
        try {
          read(read_bytes(e.path()));
        } catch (const Error&) {
          // a clear refusal is a correct answer
        } catch (const std::exception& ex) {
          ADD_FAILURE() << e.path() << ": " << reader << " threw something other than cuae::Error: " << ex.what();
        }
      }
    }
  }
  EXPECT_GE(inputs, 20) << "the seed corpora are missing";
}

}  // namespace
}  // namespace cuae
