// host/data: the IDX reader on the real Fashion-MNIST files and on small files built here, good and
// malformed (every malformed case must throw cuae::Error naming the file and the problem), and
// the subset / split helpers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cuae/data.hpp"
#include "tests/file_helpers.hpp"

namespace fs = std::filesystem;
using cuae::Dataset;
using cuae::Error;
using cuae::Tensor;

namespace {

using cuae::test::Bytes;
using cuae::test::expect_error;
using cuae::test::TempDir;

void put_be32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

// An IDX file: magic 00 00 type rank, big-endian dims, then `data` as given.
Bytes idx_bytes(unsigned char type, const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes u8_data(std::size_t n, unsigned start = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>((start + i * 37) % 256);
  return b;
}

void write_plain(const std::string& path, const Bytes& b) { cuae::test::write_bytes(path, b); }

void write_gz(const std::string& path, const Bytes& b) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  if (!b.empty()) ASSERT_EQ(gzwrite(gz, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

Bytes read_all(const std::string& path) { return cuae::test::read_bytes(path); }

}  // namespace

// ---- real data ------------------------------------------------------------------------------

class FashionMnist : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = cuae::default_fashion_mnist_dir();
    if (!fs::exists(fs::path(dir_) / "train-images-idx3-ubyte.gz") && !fs::exists(fs::path(dir_) / "train-images-idx3-ubyte"))
      GTEST_SKIP() << "Fashion-MNIST not found in " << dir_
                   << " (install dataset-fashion-mnist or set CUAE_FASHION_MNIST_DIR)";
  }
  // Pixel bytes recovered from the [0, 1] floats; exact because every value is u8/255.
  static std::int64_t byte_sum(const Tensor& images, std::int64_t begin, std::int64_t end) {
    const std::int64_t d = images.dim(1);
    const float* p = images.f32();
    std::int64_t s = 0;
    for (std::int64_t i = begin * d; i < end * d; ++i) s += std::lround(p[i] * 255.0f);
    return s;
  }
  static void check(const Dataset& ds, std::int64_t n) {
    ASSERT_EQ(ds.size(), n);
    EXPECT_EQ(ds.rows, 28);
    EXPECT_EQ(ds.cols, 28);
    EXPECT_EQ(ds.features(), 784);
    EXPECT_EQ(ds.images.shape(), (cuae::Shape{n, 784}));
    EXPECT_EQ(ds.images.dtype(), cuae::DType::F32);
    EXPECT_EQ(ds.images.device(), cuae::Device::CPU);
    ASSERT_TRUE(ds.has_labels());
    EXPECT_EQ(ds.labels.shape(), (cuae::Shape{n}));
    const float* p = ds.images.f32();
    float lo = 1e9f, hi = -1e9f;
    for (std::int64_t i = 0; i < ds.images.numel(); ++i) {
      lo = std::min(lo, p[i]);
      hi = std::max(hi, p[i]);
    }
    EXPECT_EQ(lo, 0.0f);
    EXPECT_EQ(hi, 1.0f);  // 255 occurs and maps to exactly 1
    std::vector<int> per_class(10, 0);
    const float* l = ds.labels.f32();
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(l[i], std::floor(l[i])) << "label " << i;
      ASSERT_GE(l[i], 0.0f);
      ASSERT_LE(l[i], 9.0f);
      ++per_class[static_cast<int>(l[i])];
    }
    for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], n / 10) << "class " << c;  // balanced set
  }
  std::string dir_;
};

// Checksums below come from decoding the same files with Python's gzip + NumPy, independently of
// this reader.
TEST_F(FashionMnist, TrainSet) {
  const Dataset ds = cuae::load_fashion_mnist(dir_, true);
  check(ds, 60000);
  EXPECT_EQ(ds.name, "fashion-mnist/train");
  EXPECT_EQ(byte_sum(ds.images, 0, 60000), 3431114169LL);
  EXPECT_EQ(byte_sum(ds.images, 0, 1), 76247);
  EXPECT_EQ(byte_sum(ds.images, 59999, 60000), 16684);
  const float* l = ds.labels.f32();
  EXPECT_EQ((std::vector<float>{l[0], l[1], l[2], l[3], l[4]}), (std::vector<float>{9, 0, 0, 3, 0}));
  EXPECT_EQ(l[59999], 5.0f);
}

TEST_F(FashionMnist, TestSet) {
  const Dataset ds = cuae::load_fashion_mnist(dir_, false);
  check(ds, 10000);
  EXPECT_EQ(ds.name, "fashion-mnist/test");
  EXPECT_EQ(byte_sum(ds.images, 0, 10000), 573469082LL);
  EXPECT_EQ(byte_sum(ds.images, 0, 1), 33456);
  EXPECT_EQ(byte_sum(ds.images, 9999, 10000), 24390);
  const float* l = ds.labels.f32();
  EXPECT_EQ((std::vector<float>{l[0], l[1], l[2], l[3], l[4]}), (std::vector<float>{9, 2, 1, 1, 6}));
}

TEST_F(FashionMnist, ValidationSplitOfRealData) {
  const Dataset ds = cuae::load_fashion_mnist(dir_, true);
  auto [train, val] = cuae::split_tail(ds, 5000);
  EXPECT_EQ(train.size(), 55000);
  EXPECT_EQ(val.size(), 5000);
  EXPECT_EQ(byte_sum(val.images, 4999, 5000), 16684);  // the last image of the full set
  EXPECT_EQ(val.labels.f32()[4999], 5.0f);
}

// ---- read_idx on small files ----------------------------------------------------------------

TEST(Idx, ReadsPlainAndGzipAlike) {
  TempDir dir;
  const Bytes data = u8_data(2 * 3 * 4);
  const Bytes file = idx_bytes(0x08, {2, 3, 4}, data);
  write_plain(dir.file("a.idx"), file);
  write_gz(dir.file("a.idx.gz"), file);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    const Tensor t = cuae::read_idx(dir.file(name));
    EXPECT_EQ(t.shape(), (cuae::Shape{2, 3, 4})) << name;
    const auto v = t.values();
    for (std::size_t i = 0; i < data.size(); ++i) ASSERT_EQ(v[i], static_cast<float>(data[i])) << name << " " << i;
  }
}

TEST(Idx, MultiByteTypesAreBigEndian) {
  TempDir dir;
  Bytes i32;
  for (std::int32_t v : {1, -2, 70000}) put_be32(i32, static_cast<std::uint32_t>(v));
  write_plain(dir.file("i32"), idx_bytes(0x0C, {3}, i32));
  EXPECT_EQ(cuae::read_idx(dir.file("i32")).values(), (std::vector<float>{1, -2, 70000}));

  Bytes f32;
  for (float v : {0.5f, -3.25f}) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    put_be32(f32, u);
  }
  write_plain(dir.file("f32"), idx_bytes(0x0D, {1, 2}, f32));
  EXPECT_EQ(cuae::read_idx(dir.file("f32")).values(), (std::vector<float>{0.5f, -3.25f}));

  write_plain(dir.file("i16"), idx_bytes(0x0B, {2}, {0xFF, 0xFE, 0x01, 0x00}));  // -2, 256
  EXPECT_EQ(cuae::read_idx(dir.file("i16")).values(), (std::vector<float>{-2, 256}));

  write_plain(dir.file("i8"), idx_bytes(0x09, {2}, {0xFF, 0x05}));
  EXPECT_EQ(cuae::read_idx(dir.file("i8")).values(), (std::vector<float>{-1, 5}));

  Bytes f64;
  const double d = -1.5;
  std::uint64_t u;
  std::memcpy(&u, &d, 8);
  put_be32(f64, static_cast<std::uint32_t>(u >> 32));
  put_be32(f64, static_cast<std::uint32_t>(u));
  write_plain(dir.file("f64"), idx_bytes(0x0E, {1}, f64));
  EXPECT_EQ(cuae::read_idx(dir.file("f64")).values(), (std::vector<float>{-1.5f}));
}

TEST(Idx, MissingFile) {
  TempDir dir;
  const std::string p = dir.file("nope.idx.gz");
  expect_error([&] { cuae::read_idx(p); }, {p, "cannot open", "No such file"});
}

TEST(Idx, WrongMagicShowsFoundAndExpected) {
  TempDir dir;
  write_plain(dir.file("m"), {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7});
  expect_error([&] { cuae::read_idx(dir.file("m")); }, {dir.file("m"), "magic number 0x12340801", "expected 0x0000"});
}

TEST(Idx, UnsupportedTypeCode) {
  TempDir dir;
  write_plain(dir.file("t"), idx_bytes(0x07, {1}, {0}));
  expect_error([&] { cuae::read_idx(dir.file("t")); }, {dir.file("t"), "unsupported IDX type code 0x07"});
}

TEST(Idx, RankZeroAndShortFiles) {
  TempDir dir;
  write_plain(dir.file("r0"), {0, 0, 8, 0});
  expect_error([&] { cuae::read_idx(dir.file("r0")); }, {dir.file("r0"), "rank 0"});
  write_plain(dir.file("short"), {0, 0});
  expect_error([&] { cuae::read_idx(dir.file("short")); }, {dir.file("short"), "truncated", "magic"});
  write_plain(dir.file("dims"), {0, 0, 8, 3, 0, 0, 0, 2, 0});  // rank 3 but 5 bytes of dims
  expect_error([&] { cuae::read_idx(dir.file("dims")); }, {dir.file("dims"), "truncated header", "needs 12 bytes", "found 5"});
}

TEST(Idx, TruncatedDataPlainAndGzip) {
  TempDir dir;
  Bytes file = idx_bytes(0x08, {3, 4}, u8_data(12));
  file.resize(file.size() - 5);  // 7 of 12 data bytes left
  write_plain(dir.file("t.idx"), file);
  write_gz(dir.file("t.idx.gz"), file);
  for (const char* name : {"t.idx", "t.idx.gz"})
    expect_error([&] { cuae::read_idx(dir.file(name)); },
                 {dir.file(name), "truncated", "needs 12 bytes of data, found 7"});

  // A gzip stream cut in the middle (a partial download): the reader must report truncation.
  const Bytes big = idx_bytes(0x08, {100, 100}, u8_data(10000));
  write_gz(dir.file("whole.gz"), big);
  Bytes gz = read_all(dir.file("whole.gz"));
  gz.resize(gz.size() / 2);
  write_plain(dir.file("cut.gz"), gz);
  expect_error([&] { cuae::read_idx(dir.file("cut.gz")); }, {dir.file("cut.gz"), "truncated", "needs 10000 bytes"});
}

TEST(Idx, CorruptGzipStream) {
  TempDir dir;
  write_gz(dir.file("ok.gz"), idx_bytes(0x08, {100, 100}, u8_data(10000)));
  Bytes gz = read_all(dir.file("ok.gz"));
  for (std::size_t i = 20; i < gz.size() - 8; i += 3) gz[i] ^= 0x5A;  // keep the gzip header, wreck the deflate data
  write_plain(dir.file("bad.gz"), gz);
  expect_error([&] { cuae::read_idx(dir.file("bad.gz")); }, {dir.file("bad.gz")});
}

TEST(Idx, TrailingGarbage) {
  TempDir dir;
  Bytes file = idx_bytes(0x08, {2, 2}, u8_data(4));
  file.insert(file.end(), {1, 2, 3});
  write_plain(dir.file("g"), file);
  write_gz(dir.file("g.gz"), file);
  for (const char* name : {"g", "g.gz"})
    expect_error([&] { cuae::read_idx(dir.file(name)); }, {dir.file(name), "3 more bytes follow", "4 bytes of data", "trailing garbage"});
}

TEST(Idx, ImplausibleDimensionsFailWithoutAllocating) {
  TempDir dir;
  write_plain(dir.file("huge"), idx_bytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {1, 2, 3}));
  expect_error([&] { cuae::read_idx(dir.file("huge")); }, {dir.file("huge"), "implausibly large"});
  write_plain(dir.file("big"), idx_bytes(0x08, {1000000, 100000}, {1, 2, 3}));  // 100 GB claimed
  expect_error([&] { cuae::read_idx(dir.file("big")); }, {dir.file("big"), "truncated", "found 3"});
}

// ---- datasets ---------------------------------------------------------------------------------

TEST(IdxDataset, ImagesScaledAndLabelsKept) {
  TempDir dir;
  const Bytes px = u8_data(5 * 2 * 3);
  write_gz(dir.file("img.gz"), idx_bytes(0x08, {5, 2, 3}, px));
  write_plain(dir.file("lab"), idx_bytes(0x08, {5}, {4, 0, 9, 1, 7}));
  const Dataset ds = cuae::load_idx_dataset(dir.file("img.gz"), dir.file("lab"));
  EXPECT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.rows, 2);
  EXPECT_EQ(ds.cols, 3);
  EXPECT_EQ(ds.images.shape(), (cuae::Shape{5, 6}));
  const auto v = ds.images.values();
  for (std::size_t i = 0; i < px.size(); ++i) ASSERT_EQ(v[i], px[i] / 255.0f);
  EXPECT_EQ(ds.labels.values(), (std::vector<float>{4, 0, 9, 1, 7}));
  EXPECT_EQ(ds.name, "img.gz");

  const Dataset unlabelled = cuae::load_idx_dataset(dir.file("img.gz"), "");
  EXPECT_FALSE(unlabelled.has_labels());
  EXPECT_EQ(unlabelled.size(), 5);
}

TEST(IdxDataset, CountMismatchNamesBothFilesAndCounts) {
  TempDir dir;
  write_plain(dir.file("img"), idx_bytes(0x08, {5, 2, 2}, u8_data(20)));
  write_plain(dir.file("lab"), idx_bytes(0x08, {4}, {1, 2, 3, 4}));
  expect_error([&] { cuae::load_idx_dataset(dir.file("img"), dir.file("lab")); },
               {dir.file("img"), dir.file("lab"), "5 images", "4 labels", "mismatch"});
}

TEST(IdxDataset, WrongRanks) {
  TempDir dir;
  write_plain(dir.file("img"), idx_bytes(0x08, {2, 2, 2}, u8_data(8)));
  write_plain(dir.file("lab2"), idx_bytes(0x08, {2, 1}, {1, 2}));
  expect_error([&] { cuae::load_idx_dataset(dir.file("img"), dir.file("lab2")); },
               {dir.file("lab2"), "rank 1", "found rank 2", "0x00000802"});
  // Image and label files swapped: the image reader says what it expected.
  write_plain(dir.file("lab"), idx_bytes(0x08, {2}, {1, 2}));
  expect_error([&] { cuae::load_idx_dataset(dir.file("lab"), dir.file("img")); },
               {dir.file("lab"), "rank 3", "found rank 1", "0x00000801", "0x00000803"});
}

TEST(IdxDataset, FashionMnistNamesGzipOrPlain) {
  TempDir dir;
  // Train set un-gzipped, test set gzipped: both naming schemes are found.
  write_plain(dir.file("train-images-idx3-ubyte"), idx_bytes(0x08, {3, 28, 28}, u8_data(3 * 784)));
  write_plain(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {3}, {0, 1, 2}));
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes(0x08, {2, 28, 28}, u8_data(2 * 784)));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x08, {2}, {8, 9}));
  const Dataset tr = cuae::load_fashion_mnist(dir.path().string(), true);
  EXPECT_EQ(tr.size(), 3);
  EXPECT_EQ(tr.labels.values(), (std::vector<float>{0, 1, 2}));
  const Dataset te = cuae::load_fashion_mnist(dir.path().string() + "/", false);
  EXPECT_EQ(te.size(), 2);
  EXPECT_EQ(te.labels.values(), (std::vector<float>{8, 9}));

  fs::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  expect_error([&] { cuae::load_fashion_mnist(dir.path().string(), false); },
               {dir.path().string(), "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte "});
}

TEST(IdxDataset, DefaultDirFollowsEnvironment) {
  const char* old = std::getenv("CUAE_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  ::setenv("CUAE_FASHION_MNIST_DIR", "/some/where", 1);
  EXPECT_EQ(cuae::default_fashion_mnist_dir(), "/some/where");
  ::unsetenv("CUAE_FASHION_MNIST_DIR");
  EXPECT_EQ(cuae::default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("CUAE_FASHION_MNIST_DIR", saved.c_str(), 1);
}

// ---- subset / split_tail ------------------------------------------------------------------------

Dataset tiny_dataset(std::int64_t n) {
  Dataset d;
  std::vector<float> px(static_cast<std::size_t>(n * 4)), lab(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < lab.size(); ++i) lab[i] = static_cast<float>(i % 10);
  d.images = Tensor::from(px, {n, 4});
  d.labels = Tensor::from(lab, {n});
  d.rows = d.cols = 2;
  d.name = "tiny";
  return d;
}

TEST(Subset, ViewsOfTheRightRows) {
  const Dataset d = tiny_dataset(10);
  const Dataset s = cuae::subset(d, 3, 4);
  EXPECT_EQ(s.size(), 4);
  EXPECT_EQ(s.rows, 2);
  EXPECT_EQ(s.name, "tiny[3:7]");
  EXPECT_EQ(s.images.values()[0], 12.0f);
  EXPECT_EQ(s.labels.values(), (std::vector<float>{3, 4, 5, 6}));
  EXPECT_EQ(s.images.data(), static_cast<float*>(d.images.data()) + 12);  // a view, no copy

  const Dataset empty = cuae::subset(d, 10, 0);
  EXPECT_EQ(empty.size(), 0);

  Dataset unlabelled = d;
  unlabelled.labels = Tensor();
  EXPECT_FALSE(cuae::subset(unlabelled, 0, 2).has_labels());
}

TEST(Subset, ViewKeepsStorageAlive) {
  Dataset s;
  {
    const Dataset d = tiny_dataset(5);
    s = cuae::subset(d, 1, 2);
  }
  EXPECT_EQ(s.images.values(), (std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST(Subset, OutOfRange) {
  const Dataset d = tiny_dataset(10);
  expect_error([&] { cuae::subset(d, 8, 3); }, {"tiny", "10 samples"});
  expect_error([&] { cuae::subset(d, -1, 2); }, {"tiny"});
  expect_error([&] { cuae::subset(d, 0, -1); }, {"tiny"});
}

TEST(SplitTail, HeadAndTail) {
  const Dataset d = tiny_dataset(10);
  auto [head, tail] = cuae::split_tail(d, 3);
  EXPECT_EQ(head.size(), 7);
  EXPECT_EQ(tail.size(), 3);
  EXPECT_EQ(tail.labels.values(), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(head.labels.values()[6], 6.0f);
  auto [all, none] = cuae::split_tail(d, 0);
  EXPECT_EQ(all.size(), 10);
  EXPECT_EQ(none.size(), 0);
  expect_error([&] { cuae::split_tail(d, 11); }, {"tiny", "11", "10 samples"});
  expect_error([&] { cuae::split_tail(d, -1); }, {"tiny"});
}
