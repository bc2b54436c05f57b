// host/io: safetensors, .npy and PNG round trips, byte-level checks of what we write against the
// formats' specifications, every malformed input the readers must reject (with the file and the
// field named), and the atomic-write guarantees (no temporaries left, failures never clobber).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuae/image.hpp"
#include "cuae/npy.hpp"
#include "cuae/safetensors.hpp"
#include "tests/common.hpp"
#include "tests/file_helpers.hpp"

namespace fs = std::filesystem;
using cuae::DType;
using cuae::Shape;
using cuae::Tensor;
using cuae::test::Bytes;
using cuae::test::expect_error;
using cuae::test::read_bytes;
using cuae::test::TempDir;
using cuae::test::write_bytes;

namespace {

Tensor iota(Shape shape, float start = 0.0f, float step = 1.0f) {
  std::vector<float> v(static_cast<std::size_t>(cuae::shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = start + step * static_cast<float>(i);
  return Tensor::from(v, std::move(shape));
}

// A 16-bit tensor holding the given raw bit patterns.
Tensor half_bits(DType dtype, Shape shape, const std::vector<std::uint16_t>& bits) {
  Tensor t(std::move(shape), dtype);
  std::memcpy(t.data(), bits.data(), bits.size() * 2);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.data(), b.data(), a.nbytes()) == 0);
}

std::uint64_t le64(const Bytes& b, std::size_t at = 0) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}

// A safetensors file from a header text and `data` bytes of zeros (no padding added: readers must
// accept the unpadded headers other writers produce).
Bytes st_file(const std::string& header, std::size_t data = 0) {
  Bytes b;
  b.reserve(8 + header.size() + data);
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(header.size() >> (8 * i)));
  for (char c : header) b.push_back(static_cast<unsigned char>(c));
  b.resize(b.size() + data, 0);
  return b;
}

bool has_temporaries(const TempDir& dir) {
  for (const auto& n : dir.entries())
    if (n.find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

// ---- safetensors: writing and reading back --------------------------------------------------

TEST(Safetensors, RoundTripSeveralTensorsAndMetadata) {
  TempDir dir;
  const std::string p = dir.file("ckpt.safetensors");
  const Tensor w = iota({3, 5}, -2.0f, 0.25f);
  const Tensor b = iota({5}, 1.0f, -0.5f);
  const Tensor scalar = Tensor::from({42.5f}, {});
  const Tensor empty({0, 4});
  const Tensor bf = half_bits(DType::BF16, {2, 2}, {0x3F80, 0xC000, 0x0000, 0x7F80});  // 1, -2, 0, +inf
  const Tensor f16 = half_bits(DType::F16, {3}, {0x3C00, 0xBC00, 0x7E00});               // 1, -1, NaN
  const std::map<std::string, std::string> meta = {
      {"config", R"({"model": "deep", "layers": [784, 256, 32]})"}, {"step", "1200"}, {"note", "üñí \"quoted\"\n"}};
  cuae::save_safetensors(p, {{"enc.w", w}, {"enc.b", b}, {"scalar", scalar}, {"empty", empty}, {"bf", bf}, {"f16", f16}},
                         meta);

  const cuae::SafetensorsFile f = cuae::load_safetensors(p);
  EXPECT_EQ(f.order, (std::vector<std::string>{"enc.w", "enc.b", "scalar", "empty", "bf", "f16"}));
  EXPECT_EQ(f.metadata, meta);
  EXPECT_TRUE(same_bytes(f.at("enc.w"), w));
  EXPECT_TRUE(same_bytes(f.at("enc.b"), b));
  EXPECT_TRUE(same_bytes(f.at("scalar"), scalar));
  EXPECT_EQ(f.at("scalar").shape(), Shape{});
  EXPECT_TRUE(same_bytes(f.at("empty"), empty));
  EXPECT_EQ(f.at("empty").shape(), (Shape{0, 4}));
  EXPECT_TRUE(same_bytes(f.at("bf"), bf));
  EXPECT_EQ(f.at("bf").dtype(), DType::BF16);
  EXPECT_TRUE(same_bytes(f.at("f16"), f16));
  EXPECT_EQ(f.at("f16").dtype(), DType::F16);
  EXPECT_EQ(f.at("enc.w").device(), cuae::Device::CPU);
  expect_error([&] { (void)f.at("dec.w"); }, {"dec.w", "enc.w", "f16"});
}

TEST(Safetensors, BytesFollowTheSpecification) {
  TempDir dir;
  const std::string p = dir.file("a.safetensors");
  cuae::save_safetensors(p, {{"b", iota({2}, 1.0f)}, {"a", iota({1, 3}, 5.0f)}}, {{"k", "v"}});
  const Bytes raw = read_bytes(p);
  const std::uint64_t n = le64(raw);
  ASSERT_LE(8 + n, raw.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";
  const std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  EXPECT_EQ(header.front(), '{');
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["k"], "v");
  EXPECT_EQ(j["b"]["dtype"], "F32");
  EXPECT_EQ(j["b"]["shape"], nlohmann::json({2}));
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({0, 8}));
  EXPECT_EQ(j["a"]["shape"], nlohmann::json({1, 3}));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({8, 20}));
  ASSERT_EQ(raw.size(), 8 + n + 20);
  float data[5];
  std::memcpy(data, raw.data() + 8 + n, 20);
  EXPECT_EQ((std::vector<float>(data, data + 5)), (std::vector<float>{1, 2, 5, 6, 7}));
}

// The exact bytes Hugging Face's safetensors 0.4 writes for
// save_file({"x": torch.tensor([[1., 2.]]), "y": torch.tensor([3.], dtype=torch.bfloat16)},
//           metadata={"format": "pt"}): header order sorted by name, padded with spaces.
TEST(Safetensors, ReadsFilesFromOtherWriters) {
  TempDir dir;
  std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},)"
      R"("y":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes file = st_file(header);
  const float xs[2] = {1.0f, 2.0f};
  const unsigned char* xb = reinterpret_cast<const unsigned char*>(xs);
  file.insert(file.end(), xb, xb + 8);
  file.insert(file.end(), {0x40, 0x40});  // bf16 3.0
  write_bytes(dir.file("hf.safetensors"), file);
  const auto f = cuae::load_safetensors(dir.file("hf.safetensors"));
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.at("x").values(), (std::vector<float>{1, 2}));
  const auto* y = static_cast<const std::uint16_t*>(f.at("y").data());
  EXPECT_EQ(*y, 0x4040);

  // Data order differing from header order: `order` follows the data.
  write_bytes(dir.file("rev.safetensors"),
              st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8));
  EXPECT_EQ(cuae::load_safetensors(dir.file("rev.safetensors")).order, (std::vector<std::string>{"b", "a"}));
  // No tensors at all, no metadata.
  write_bytes(dir.file("none.safetensors"), st_file("{}"));
  EXPECT_TRUE(cuae::load_safetensors(dir.file("none.safetensors")).tensors.empty());
}

TEST(Safetensors, SavesCudaTensors) {
  CUAE_SKIP_WITHOUT_GPU();
  TempDir dir;
  const Tensor host = iota({4, 3}, 0.5f);
  const Tensor dev = host.to(cuae::Device::CUDA);
  const Tensor bf_dev = half_bits(DType::BF16, {2}, {0x3F80, 0x4000}).to(cuae::Device::CUDA);
  cuae::save_safetensors(dir.file("gpu.safetensors"), {{"w", dev}, {"h", bf_dev}}, {});
  const auto f = cuae::load_safetensors(dir.file("gpu.safetensors"));
  EXPECT_TRUE(same_bytes(f.at("w"), host));
  EXPECT_EQ(*static_cast<const std::uint16_t*>(f.at("h").data()), 0x3F80);
}

TEST(Safetensors, RejectsBadTensorLists) {
  TempDir dir;
  const std::string p = dir.file("x.safetensors");
  const Tensor t = iota({2});
  expect_error([&] { cuae::save_safetensors(p, {{"a", t}, {"a", t}}); }, {p, "'a'", "twice"});
  expect_error([&] { cuae::save_safetensors(p, {{"", t}}); }, {p, "empty name"});
  expect_error([&] { cuae::save_safetensors(p, {{"__metadata__", t}}); }, {p, "__metadata__"});
  expect_error([&] { cuae::save_safetensors(p, {{"bad\xff", t}}); }, {p, "UTF-8"});
  EXPECT_FALSE(fs::exists(p));
  EXPECT_TRUE(dir.entries().empty());
}

// ---- safetensors: malformed files -----------------------------------------------------------

TEST(SafetensorsMalformed, MissingAndShortFiles) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  expect_error([&] { cuae::load_safetensors(p); }, {p, "cannot open"});
  write_bytes(p, {1, 2, 3});
  expect_error([&] { cuae::load_safetensors(p); }, {p, "3 bytes", "8-byte header length"});
}

TEST(SafetensorsMalformed, HeaderLengthBeyondFile) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  Bytes b = st_file("{}");
  b[0] = 200;  // claims a 200-byte header in a 10-byte file
  write_bytes(p, b);
  expect_error([&] { cuae::load_safetensors(p); }, {p, "header length 200", "past the end"});
  Bytes huge(8, 0xFF);
  write_bytes(p, huge);
  expect_error([&] { cuae::load_safetensors(p); }, {p, "header length", "past the end"});
}

TEST(SafetensorsMalformed, InvalidJson) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  write_bytes(p, st_file(R"({"a": {"dtype": "F32",)"));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "not valid JSON"});
  write_bytes(p, st_file(R"([1, 2])"));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "must be an object", "array"});
  write_bytes(p, st_file(R"({"a": 5})"));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'a'", "JSON object"});
}

TEST(SafetensorsMalformed, DuplicateKeys) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'a'", "twice"});
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'dtype'", "twice"});
}

TEST(SafetensorsMalformed, MissingAndExtraFields) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  write_bytes(p, st_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'w'", "missing field \"dtype\""});
  write_bytes(p, st_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'w'", "missing field \"shape\""});
  write_bytes(p, st_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'w'", "missing field \"data_offsets\""});
  write_bytes(p, st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"code":"rm -rf"}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'w'", "unexpected field \"code\""});
}

TEST(SafetensorsMalformed, BadFieldValues) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  const auto check = [&](const std::string& entry, std::size_t data, std::vector<std::string> parts) {
    write_bytes(p, st_file(R"({"enc.w":)" + entry + "}", data));
    parts.insert(parts.end(), {p, "'enc.w'"});
    expect_error([&] { cuae::load_safetensors(p); }, parts);
  };
  check(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", 4, {"unknown dtype \"F33\""});
  check(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})", 8, {"I64", "not supported"});
  check(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})", 4, {"\"dtype\" must be a string"});
  check(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4, {"shape[0]", "non-negative integer"});
  check(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4, {"shape[0]", "non-negative integer"});
  check(R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})", 4, {"\"shape\" must be an array"});
  check(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", 4, {"data_offsets", "[begin, end]"});
  check(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", 4, {"data_offsets", "end before they begin"});
  check(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", 4, {"span 4 bytes", "[2]", "needs 8"});
  check(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]})", 4, {"implausibly large"});
}

TEST(SafetensorsMalformed, OffsetsOutOfRangeOverlappingOrNotCovering) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'a'", "[0, 8)", "past the end of the 4-byte data section"});
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "'b'", "overlap", "'a'"});
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "[4, 8)", "belong to no tensor", "'b'"});
  write_bytes(p, st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 10));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "cover 4 bytes", "has 10", "[4, 10)"});
}

TEST(SafetensorsMalformed, BadMetadata) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  write_bytes(p, st_file(R"({"__metadata__":{"step":5}})"));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "__metadata__", "'step'", "must be a string"});
  write_bytes(p, st_file(R"({"__metadata__":["x"]})"));
  expect_error([&] { cuae::load_safetensors(p); }, {p, "__metadata__", "object"});
}

// ---- atomic writes ------------------------------------------------------------------------------

TEST(AtomicWrite, NoTemporariesLeftBehind) {
  TempDir dir;
  cuae::save_safetensors(dir.file("a.safetensors"), {{"w", iota({3})}});
  cuae::save_safetensors(dir.file("a.safetensors"), {{"w", iota({4})}});  // replaces
  cuae::save_npy(dir.file("a.npy"), iota({2, 2}));
  cuae::write_png(dir.file("a.png"), {0, 128, 255, 64}, 2, 2, 1);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"a.npy", "a.png", "a.safetensors"}));
  EXPECT_EQ(cuae::load_safetensors(dir.file("a.safetensors")).at("w").shape(), Shape{4});
}

TEST(AtomicWrite, MissingDirectoryThrowsNamingThePath) {
  TempDir dir;
  const std::string p = dir.file("no/such/dir/ckpt.safetensors");
  expect_error([&] { cuae::save_safetensors(p, {{"w", iota({3})}}); }, {p, "cannot write", "No such file"});
  const std::string q = dir.file("no/out.npy");
  expect_error([&] { cuae::save_npy(q, iota({3})); }, {q, "cannot write"});
  const std::string r = dir.file("no/grid.png");
  expect_error([&] { cuae::write_png(r, {0}, 1, 1, 1); }, {r, "cannot write"});
  EXPECT_TRUE(dir.entries().empty());
}

TEST(AtomicWrite, FailedWriteKeepsTheOldFile) {
  TempDir dir;
  const std::string p = dir.file("ckpt.safetensors");
  cuae::save_safetensors(p, {{"w", iota({3}, 7.0f)}}, {{"step", "1"}});
  const Bytes before = read_bytes(p);
  // Rejected before writing (duplicate names) ...
  expect_error([&] { cuae::save_safetensors(p, {{"w", iota({3})}, {"w", iota({3})}}); }, {p});
  EXPECT_EQ(read_bytes(p), before);
  // ... and failing after the temporary was fully written: the rename cannot replace a directory.
  const std::string d = dir.file("is_a_dir");
  fs::create_directory(d);
  expect_error([&] { cuae::save_safetensors(d, {{"w", iota({3})}}); }, {d, "cannot write", "renaming"});
  EXPECT_TRUE(fs::is_directory(d));
  EXPECT_FALSE(has_temporaries(dir));
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(cuae::load_safetensors(p).metadata.at("step"), "1");
}

// ---- .npy -----------------------------------------------------------------------------------------

TEST(Npy, HeaderFollowsTheSpecification) {
  TempDir dir;
  cuae::save_npy(dir.file("a.npy"), iota({3, 4}));
  const Bytes raw = read_bytes(dir.file("a.npy"));
  ASSERT_GE(raw.size(), 10u);
  EXPECT_EQ(std::string(raw.begin(), raw.begin() + 6), "\x93NUMPY");
  EXPECT_EQ(raw[6], 1);
  EXPECT_EQ(raw[7], 0);
  const std::size_t hlen = raw[8] | (raw[9] << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header(raw.begin() + 10, raw.begin() + 10 + static_cast<std::ptrdiff_t>(hlen));
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 0), 0u) << header;
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(raw.size(), 10 + hlen + 48);

  cuae::save_npy(dir.file("b.npy"), iota({5}));
  const Bytes rb = read_bytes(dir.file("b.npy"));
  const std::string hb(rb.begin() + 10, rb.end() - 20);
  EXPECT_NE(hb.find("'shape': (5,)"), std::string::npos) << hb;
}

TEST(Npy, RoundTrip) {
  TempDir dir;
  for (const Shape& s : {Shape{6, 7}, Shape{11}, Shape{0, 3}, Shape{2, 3, 4}}) {
    const Tensor t = iota(s, -1.0f, 0.125f);
    cuae::save_npy(dir.file("x.npy"), t);
    const Tensor back = cuae::load_npy(dir.file("x.npy"));
    EXPECT_EQ(back.shape(), s);
    EXPECT_EQ(back.values(), t.values());
  }
  Tensor special = Tensor::from({std::numeric_limits<float>::infinity(), -0.0f, 1e-45f}, {3});
  cuae::save_npy(dir.file("s.npy"), special);
  EXPECT_TRUE(same_bytes(cuae::load_npy(dir.file("s.npy")), special));
  expect_error([&] { cuae::save_npy(dir.file("h.npy"), half_bits(DType::F16, {1}, {0})); }, {dir.file("h.npy"), "F32"});
}

namespace {
// A .npy file as NumPy would write it: version 1.0 (or 2.0 with a 4-byte length), the header dict
// padded to 64, then `data`.
Bytes npy_file(const std::string& dict, const Bytes& data, int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  for (std::size_t i = 0; i < prefix - 8; ++i) b.push_back(static_cast<unsigned char>(h.size() >> (8 * i)));
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
template <typename T>
Bytes raw_of(std::initializer_list<T> v) {
  Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}
}  // namespace

TEST(Npy, ReadsOtherDtypesAndVersions) {
  TempDir dir;
  const std::string p = dir.file("x.npy");
  write_bytes(p, npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", {0, 1, 128, 255}));
  EXPECT_EQ(cuae::load_npy(p).values(), (std::vector<float>{0, 1, 128, 255}));
  write_bytes(p, npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", raw_of<std::int32_t>({-5, 0, 1 << 20})));
  EXPECT_EQ(cuae::load_npy(p).values(), (std::vector<float>{-5, 0, 1 << 20}));
  write_bytes(p, npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", raw_of<std::int64_t>({-7, 9})));
  EXPECT_EQ(cuae::load_npy(p).values(), (std::vector<float>{-7, 9}));
  write_bytes(p, npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }", raw_of<double>({0.5})));
  EXPECT_EQ(cuae::load_npy(p).shape(), (Shape{1, 1}));
  // Version 2.0, keys in another order, double quotes, no trailing comma; a 0-d array.
  write_bytes(p, npy_file(R"({"shape": (), "fortran_order": False, "descr": "<f4"})", raw_of<float>({3.5f}), 2));
  const Tensor s = cuae::load_npy(p);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(s.values(), (std::vector<float>{3.5f}));
}

TEST(NpyMalformed, EveryProblemNamed) {
  TempDir dir;
  const std::string p = dir.file("bad.npy");
  const Bytes f4 = raw_of<float>({1, 2});
  const auto rejects = [&](const Bytes& file, std::vector<std::string> parts) {
    write_bytes(p, file);
    parts.push_back(p);
    expect_error([&] { cuae::load_npy(p); }, parts);
  };
  expect_error([&] { cuae::load_npy(dir.file("missing.npy")); }, {dir.file("missing.npy"), "cannot open"});
  rejects({0x93, 'N', 'U'}, {"truncated"});
  rejects({'P', 'K', 3, 4, 0, 0, 1, 0, 0, 0, 0, 0}, {"not a .npy file"});
  Bytes v4 = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4);
  v4[6] = 4;
  rejects(v4, {"unsupported .npy version 4.0"});
  Bytes longhdr = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4);
  longhdr[9] = 0x7F;
  rejects(longhdr, {"header length", "past the end"});
  rejects(npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4), {"unsupported .npy descr '>f4'"});
  rejects(npy_file("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", f4), {"descr '|O'"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4), {"fortran_order True"});
  rejects(npy_file("{'descr': '<f4', 'shape': (2,), }", f4), {"missing key 'fortran_order'"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, }", f4), {"missing key 'shape'"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f4), {"unknown key 'x'"});
  rejects(npy_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f4), {"'descr' appears twice"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", f4), {"malformed", "True or False"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", f4), {"malformed", "non-negative integer"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } extra", f4), {"after the closing"});
  rejects(npy_file("__import__('os')", f4), {"malformed", "expected '{'"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4), {"truncated", "needs 12 bytes of data, found 8"});
  rejects(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", f4), {"4 bytes of trailing garbage"});
}

// ---- PNG ------------------------------------------------------------------------------------------

TEST(Png, GreyAndRgbRoundTrip) {
  TempDir dir;
  std::vector<std::uint8_t> grey(5 * 3), rgb(4 * 2 * 3);
  for (std::size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<std::uint8_t>(i * 17);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(255 - i * 10);
  cuae::write_png(dir.file("g.png"), grey, 5, 3, 1);
  cuae::write_png(dir.file("c.png"), rgb, 4, 2, 3);
  const cuae::PngImage g = cuae::read_png_pixels(dir.file("g.png"));
  EXPECT_EQ(g.width, 5);
  EXPECT_EQ(g.height, 3);
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, grey);
  const cuae::PngImage c = cuae::read_png_pixels(dir.file("c.png"));
  EXPECT_EQ(c.channels, 3);
  EXPECT_EQ(c.pixels, rgb);
  // read_png gives planar [C, H, W] floats.
  const Tensor t = cuae::read_png(dir.file("c.png"));
  EXPECT_EQ(t.shape(), (Shape{3, 2, 4}));
  const auto v = t.values();
  EXPECT_EQ(v[0], rgb[0] / 255.0f);      // R of pixel (0, 0)
  EXPECT_EQ(v[8], rgb[1] / 255.0f);      // G of pixel (0, 0)
  EXPECT_EQ(v[1], rgb[3] / 255.0f);      // R of pixel (0, 1)
  EXPECT_EQ(v[4], rgb[12] / 255.0f);     // R of pixel (1, 0)
}

TEST(Png, GridPlacesClampsAndPads) {
  TempDir dir;
  // 6 images of 2x3 in a 2x4 grid (two cells empty), padding 1: image i is filled with i/10, except
  // pixel (0, 0) which carries an out-of-range or NaN value to check clamping.
  const int n = 6, h = 2, w = 3, pad = 1;
  std::vector<float> px(static_cast<std::size_t>(n * h * w));
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < h * w; ++k) px[static_cast<std::size_t>(i * h * w + k)] = static_cast<float>(i) / 10.0f;
  px[0] = -3.0f;
  px[6] = 7.0f;
  px[12] = std::numeric_limits<float>::quiet_NaN();
  cuae::write_image_grid(dir.file("grid.png"), Tensor::from(px, {n, h * w}), 2, 4, h, w, 1, pad, 1.0f);
  const cuae::PngImage g = cuae::read_png_pixels(dir.file("grid.png"));
  ASSERT_EQ(g.width, 4 * (w + pad) + pad);
  ASSERT_EQ(g.height, 2 * (h + pad) + pad);
  ASSERT_EQ(g.channels, 1);
  const auto at = [&](int y, int x) { return g.pixels[static_cast<std::size_t>(y * g.width + x)]; };
  for (int i = 0; i < 8; ++i) {
    const int y0 = pad + (i / 4) * (h + pad), x0 = pad + (i % 4) * (w + pad);
    const std::uint8_t fill = i < n ? static_cast<std::uint8_t>(std::lround(i / 10.0f * 255.0f)) : 255;
    EXPECT_EQ(at(y0 + 1, x0 + 2), fill) << "cell " << i;
    EXPECT_EQ(at(y0 - 1, x0), 255) << "padding above cell " << i;
    EXPECT_EQ(at(y0, x0 - 1), 255) << "padding left of cell " << i;
  }
  EXPECT_EQ(at(pad, pad), 0);                  // -3 clamps to 0
  EXPECT_EQ(at(pad, pad + w + pad), 255);      // 7 clamps to 255
  EXPECT_EQ(at(pad, pad + 2 * (w + pad)), 0);  // NaN draws as 0
}

TEST(Png, RgbGridFromPlanarImages) {
  TempDir dir;
  // Two 1x2 RGB images as [N, C, H, W]: image 0 red, image 1 blue.
  std::vector<float> px = {1, 1, 0, 0, 0, 0, /* image 1 */ 0, 0, 0, 0, 1, 1};
  cuae::write_image_grid(dir.file("rgb.png"), Tensor::from(px, {2, 3, 1, 2}), 1, 2, 1, 2, 3, 0);
  const cuae::PngImage g = cuae::read_png_pixels(dir.file("rgb.png"));
  ASSERT_EQ(g.width, 4);
  ASSERT_EQ(g.height, 1);
  ASSERT_EQ(g.channels, 3);
  EXPECT_EQ(g.pixels, (std::vector<std::uint8_t>{255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255}));
}

TEST(Png, Errors) {
  TempDir dir;
  const std::string p = dir.file("e.png");
  expect_error([&] { cuae::write_png(p, {1, 2, 3}, 2, 2, 1); }, {p, "3 bytes of pixels", "needs 4"});
  expect_error([&] { cuae::write_png(p, {1}, 1, 1, 5); }, {p, "channels"});
  expect_error([&] { cuae::write_png(p, {}, 0, 1, 1); }, {p, "invalid PNG size"});
  const Tensor imgs = iota({5, 4}, 0.0f, 0.1f);
  expect_error([&] { cuae::write_image_grid(p, imgs, 2, 2, 2, 2, 1); }, {p, "5 images", "2x2 grid"});
  expect_error([&] { cuae::write_image_grid(p, imgs, 3, 2, 3, 3, 1); }, {p, "[5, 4]", "[N, 9]"});
  expect_error([&] { cuae::write_image_grid(p, imgs, 3, 2, 2, 2, 2); }, {p, "channels must be 1 or 3"});
  EXPECT_TRUE(dir.entries().empty());
  expect_error([&] { cuae::read_png(dir.file("none.png")); }, {dir.file("none.png"), "cannot open"});
  cuae::test::write_text(dir.file("fake.png"), "this is not a PNG file at all");
  expect_error([&] { cuae::read_png(dir.file("fake.png")); }, {dir.file("fake.png"), "not a valid PNG"});
  // A real PNG cut short: the header decodes, the pixel data do not.
  std::vector<std::uint8_t> big(64 * 64);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7919 % 251);
  cuae::write_png(dir.file("cut.png"), big, 64, 64, 1);
  Bytes cut = read_bytes(dir.file("cut.png"));
  cut.resize(cut.size() / 2);
  write_bytes(dir.file("cut.png"), cut);
  expect_error([&] { cuae::read_png(dir.file("cut.png")); }, {dir.file("cut.png")});
}
