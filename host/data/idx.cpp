// IDX reader. zlib's gz* functions read gzip'd and plain files alike, so one path serves both.
// The data are read in bounded chunks rather than allocated from the header up front: a corrupt
// header claiming terabytes then fails as "truncated" instead of as an allocation failure.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cuae/data.hpp"

namespace cuae {

namespace {

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

struct IdxType {
  unsigned char code;
  const char* name;
  int size;
};
constexpr IdxType kIdxTypes[] = {{0x08, "uint8", 1},  {0x09, "int8", 1},    {0x0B, "int16", 2},
                                 {0x0C, "int32", 4},  {0x0D, "float32", 4}, {0x0E, "float64", 8}};

const IdxType* find_type(unsigned char code) {
  for (const auto& t : kIdxTypes)
    if (t.code == code) return &t;
  return nullptr;
}

// Owns the gzFile so every error path closes it.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      const int e = errno;
      throw Error(path + ": cannot open: " + std::strerror(e));
    }
    if (S_ISDIR(st.st_mode)) throw Error(path + ": cannot open: is a directory");
    gz_ = gzopen(path.c_str(), "rb");
    if (!gz_) {
      const int e = errno;
      throw Error(path + ": cannot open: " + (e ? std::strerror(e) : "out of memory"));
    }
    gzbuffer(gz_, 1 << 18);  // fewer read() calls on the 26 MB Fashion-MNIST train images
  }
  ~GzReader() {
    if (gz_) gzclose(gz_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to `bytes`; returns how many arrived (fewer only at end of data). A corrupt gzip
  // stream is an error; a gzip stream that simply stops early is reported by the caller as
  // truncation, with the counts.
  std::size_t read(void* dst, std::size_t bytes) {
    std::size_t got = 0;
    auto* out = static_cast<unsigned char*>(dst);
    while (got < bytes) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(bytes - got, 1u << 24));
      const int n = gzread(gz_, out + got, chunk);
      if (n < 0) {
        int errnum = 0;
        const char* msg = gzerror(gz_, &errnum);
        // zlib prefixes its message with the path; drop that so the path appears once.
        std::string m = msg ? msg : "unknown zlib error";
        if (m.rfind(path_ + ": ", 0) == 0) m.erase(0, path_.size() + 2);
        throw Error(path_ + ": corrupt gzip data: " + m);
      }
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    return got;
  }

  // True when the last short read came from a gzip stream that ended mid-way.
  bool stream_cut_short() {
    int errnum = Z_OK;
    gzerror(gz_, &errnum);
    return errnum == Z_BUF_ERROR;
  }
  bool compressed() { return gzdirect(gz_) == 0; }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
};

struct IdxArray {
  const IdxType* type = nullptr;
  std::uint32_t magic = 0;
  Shape shape;
  Tensor values;  // float32, shape `shape`
};

template <std::size_t N>
using UInt = std::conditional_t<N == 1, std::uint8_t,
                                std::conditional_t<N == 2, std::uint16_t, std::conditional_t<N == 4, std::uint32_t, std::uint64_t>>>;

// IDX stores multi-byte elements big-endian: assemble the bits byte by byte, then reinterpret.
template <typename T>
T load_be(const unsigned char* p) {
  UInt<sizeof(T)> u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) u = static_cast<UInt<sizeof(T)>>((u << 8) | p[i]);
  return std::bit_cast<T>(u);
}

template <typename T>
void convert(const unsigned char* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_be<T>(src + i * sizeof(T)));
}

IdxArray read_idx_array(const std::string& path) {
  GzReader in(path);
  IdxArray out;
  unsigned char head[4];
  const std::size_t got_magic = in.read(head, 4);
  if (got_magic < 4)
    throw Error(path + ": truncated: " + std::to_string(got_magic) +
                " bytes, too short for the 4-byte IDX magic number");
  out.magic = be32(head);
  if (head[0] != 0 || head[1] != 0)
    throw Error(path + ": not an IDX file: magic number " + hex32(out.magic) +
                " (expected 0x0000TTRR: two zero bytes, type code TT in 08..0e, rank RR)");
  out.type = find_type(head[2]);
  if (!out.type) {
    char code[8];
    std::snprintf(code, sizeof code, "0x%02x", head[2]);
    throw Error(path + ": unsupported IDX type code " + code + " (magic " + hex32(out.magic) +
                "; supported: 0x08 uint8, 0x09 int8, 0x0b int16, 0x0c int32, 0x0d float32, 0x0e float64)");
  }
  const int rank = head[3];
  if (rank == 0) throw Error(path + ": IDX magic " + hex32(out.magic) + " declares rank 0 (no dimensions)");

  std::vector<unsigned char> dims(static_cast<std::size_t>(rank) * 4);
  const std::size_t got_dims = in.read(dims.data(), dims.size());
  if (got_dims < dims.size())
    throw Error(path + ": truncated header: rank " + std::to_string(rank) + " needs " + std::to_string(dims.size()) +
                " bytes of dimensions, found " + std::to_string(got_dims));
  std::int64_t numel = 1;
  for (int i = 0; i < rank; ++i) {
    const std::int64_t d = be32(&dims[static_cast<std::size_t>(i) * 4]);
    out.shape.push_back(d);
    // 2^40 elements is far beyond any real IDX file and keeps the byte count below int64 overflow.
    if (__builtin_mul_overflow(numel, d, &numel) || numel > (std::int64_t{1} << 40))
      throw Error(path + ": IDX dimensions " + shape_str(out.shape) + "... are implausibly large");
  }
  const std::size_t expected = static_cast<std::size_t>(numel) * static_cast<std::size_t>(out.type->size);

  std::vector<unsigned char> raw;
  std::size_t got = 0;
  while (got < expected) {
    const std::size_t chunk = std::min<std::size_t>(expected - got, std::size_t{16} << 20);
    raw.resize(got + chunk);
    const std::size_t n = in.read(raw.data() + got, chunk);
    got += n;
    if (n < chunk) break;
  }
  if (got < expected)
    throw Error(path + ": truncated: " + std::string(out.type->name) + " " + shape_str(out.shape) +
                " needs " + std::to_string(expected) + " bytes of data, found " + std::to_string(got) +
                (in.compressed() && in.stream_cut_short() ? " (the gzip stream ends early)" : ""));
  unsigned char extra[4096];
  std::size_t trailing = 0;
  for (std::size_t n; (n = in.read(extra, sizeof extra)) > 0;) trailing += n;
  if (trailing)
    // Extra bytes mean a damaged header as often as a damaged end: a rank byte that is too small
    // reads the next dimensions as data. Both readings are given.
    throw Error(path + ": the header (magic " + hex32(out.magic) + ": " + out.type->name + ", rank " +
                std::to_string(out.shape.size()) + ", shape " + shape_str(out.shape) + ") describes " +
                std::to_string(expected) + " bytes of data, but " + std::to_string(trailing) +
                " more bytes follow them: a wrong rank or dimension in the header, or trailing garbage");

  out.values = Tensor(out.shape);
  float* dst = out.values.f32();
  const auto n = static_cast<std::size_t>(numel);
  switch (out.type->code) {
    case 0x08: convert<std::uint8_t>(raw.data(), dst, n); break;
    case 0x09: convert<std::int8_t>(raw.data(), dst, n); break;
    case 0x0B: convert<std::int16_t>(raw.data(), dst, n); break;
    case 0x0C: convert<std::int32_t>(raw.data(), dst, n); break;
    case 0x0D: convert<float>(raw.data(), dst, n); break;
    case 0x0E: convert<double>(raw.data(), dst, n); break;
  }
  return out;
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// "<dir>/<stem>.gz" if present, else "<dir>/<stem>"; neither: an error naming both.
std::string find_variant(const std::string& dir, const std::string& stem) {
  const std::string gz = join(dir, stem + ".gz"), plain = join(dir, stem);
  if (file_exists(gz)) return gz;
  if (file_exists(plain)) return plain;
  throw Error("dataset file missing in " + dir + ": neither " + stem + ".gz nor " + stem + " exists");
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Tensor read_idx(const std::string& path) { return read_idx_array(path).values; }

Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  IdxArray img = read_idx_array(images_path);
  if (img.shape.size() != 3)
    throw Error(images_path + ": an image file must have rank 3 [N, rows, cols] (magic 0x0000" +
                hex32(img.magic).substr(6, 2) + "03), found rank " + std::to_string(img.shape.size()) + " " +
                shape_str(img.shape) + " (magic " + hex32(img.magic) + ")");
  if (img.shape[1] > INT32_MAX || img.shape[2] > INT32_MAX)
    throw Error(images_path + ": image size " + shape_str(img.shape) + " is implausibly large");
  // An image needs a pixel: without this, a header of 2^31 images of 0 rows is 0 bytes of data.
  if (img.shape[1] == 0 || img.shape[2] == 0)
    throw Error(images_path + ": images of " + std::to_string(img.shape[1]) + "x" + std::to_string(img.shape[2]) +
                " pixels " + shape_str(img.shape) + ": an image needs at least one pixel");
  Dataset d;
  d.rows = static_cast<int>(img.shape[1]);
  d.cols = static_cast<int>(img.shape[2]);
  const std::int64_t n = img.shape[0];
  d.images = img.values.reshape({n, d.features()});
  if (img.type->code == 0x08) {
    // uint8 pixels to [0, 1]: a multiply by the reciprocal would round differently from u8/255 for
    // some values, and a division per pixel costs nothing next to the gzip decode.
    float* p = d.images.f32();
    for (std::int64_t i = 0, e = d.images.numel(); i < e; ++i) p[i] = p[i] / 255.0f;
  }
  d.name = base_name(images_path);
  // Integer pixels are finite by construction; floating-point files may hold NaN or Inf.
  if (img.type->code == 0x0D || img.type->code == 0x0E) check_pixels(d.images, images_path, false);

  if (!labels_path.empty()) {
    IdxArray lab = read_idx_array(labels_path);
    if (lab.shape.size() != 1)
      throw Error(labels_path + ": a label file must have rank 1 [N] (magic 0x0000" + hex32(lab.magic).substr(6, 2) +
                  "01), found rank " + std::to_string(lab.shape.size()) + " " + shape_str(lab.shape) + " (magic " +
                  hex32(lab.magic) + ")");
    if (lab.shape[0] != n)
      throw Error("image/label count mismatch: " + images_path + " has " + std::to_string(n) + " images but " +
                  labels_path + " has " + std::to_string(lab.shape[0]) + " labels");
    d.labels = lab.values;
  }
  return d;
}

Dataset load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images = find_variant(dir, prefix + "-images-idx3-ubyte");
  const std::string labels = find_variant(dir, prefix + "-labels-idx1-ubyte");
  Dataset d = load_idx_dataset(images, labels);
  d.name = std::string("fashion-mnist/") + (train ? "train" : "test");
  return d;
}

std::string default_fashion_mnist_dir() {
  if (const char* env = std::getenv("CUAE_FASHION_MNIST_DIR"); env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

void check_pixels(const Tensor& images, const std::string& origin, bool unit_interval) {
  if (images.rank() != 2) throw Error(origin + ": images must be [N, D], got " + shape_str(images.shape()));
  const std::int64_t n = images.dim(0), d = images.dim(1);
  const float* p = images.f32();
  std::int64_t bad = 0, first = -1;
  float value = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = p + i * d;
    bool ok = true;
    for (std::int64_t j = 0; j < d && ok; ++j) {
      const float v = row[j];
      ok = std::isfinite(v) && (!unit_interval || (v >= 0.0f && v <= 1.0f));
      if (!ok && bad == 0) value = v;
    }
    if (!ok && bad++ == 0) first = i;
  }
  if (bad == 0) return;
  const bool finite = std::isfinite(value);
  throw Error(origin + ": image " + std::to_string(first) + " holds " + (finite ? "the value " : "") +
              std::to_string(value) + (finite ? ", outside [0, 1] (the bce loss compares pixels as probabilities)" : "") +
              "; " + std::to_string(bad) + " of " + std::to_string(n) + " images have such values");
}

Dataset subset(const Dataset& d, std::int64_t begin, std::int64_t count) {
  const std::int64_t n = d.size();
  if (begin < 0 || count < 0 || begin > n || count > n - begin)
    throw Error("subset of " + std::to_string(count) + " samples from index " + std::to_string(begin) +
                " is outside dataset " + d.name + " of " + std::to_string(n) + " samples");
  Dataset s;
  s.images = d.images.rows(begin, begin + count);
  if (d.has_labels()) s.labels = d.labels.rows(begin, begin + count);
  s.rows = d.rows;
  s.cols = d.cols;
  s.channels = d.channels;
  s.name = d.name + "[" + std::to_string(begin) + ":" + std::to_string(begin + count) + "]";
  return s;
}

std::pair<Dataset, Dataset> split_tail(const Dataset& d, std::int64_t n_tail) {
  const std::int64_t n = d.size();
  if (n_tail < 0 || n_tail > n)
    throw Error("cannot split the last " + std::to_string(n_tail) + " samples off dataset " + d.name + " of " +
                std::to_string(n) + " samples");
  return {subset(d, 0, n - n_tail), subset(d, n - n_tail, n_tail)};
}

}  // namespace cuae
