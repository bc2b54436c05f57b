// .npy reader/writer. The header is a Python dict literal; rather than accept arbitrary Python,
// the reader parses exactly the grammar NumPy writes (three known keys, string / bool / int-tuple
// values) and rejects anything else with the position of the problem.
#include "cuae/npy.hpp"

#include <sys/stat.h>

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>

#include "host/io/atomic_file.hpp"

namespace cuae {

static_assert(std::endian::native == std::endian::little, "npy '<' data are read and written as raw host bytes");

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes + NUL

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

struct Header {
  std::string descr;
  bool fortran = false;
  Shape shape;
};

class DictParser {
 public:
  DictParser(const std::string& path, std::string_view text) : path_(path), s_(text) {}

  Header parse() {
    Header h;
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') break;
      const std::string key = string_lit();
      ws();
      expect(':');
      ws();
      if (key == "descr" && !have_descr) {
        h.descr = string_lit();
        have_descr = true;
      } else if (key == "fortran_order" && !have_fortran) {
        h.fortran = bool_lit();
        have_fortran = true;
      } else if (key == "shape" && !have_shape) {
        h.shape = tuple_lit();
        have_shape = true;
      } else if (key == "descr" || key == "fortran_order" || key == "shape") {
        fail("key '" + key + "' appears twice");
      } else {
        fail("unknown key '" + key + "' (expected 'descr', 'fortran_order', 'shape')");
      }
      ws();
      if (peek() == ',') ++i_;
      else if (peek() != '}') fail("expected ',' or '}'");
    }
    ++i_;
    ws();
    if (i_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!have_descr) fail("missing key 'descr'");
    if (!have_fortran) fail("missing key 'fortran_order'");
    if (!have_shape) fail("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    // Quote the header without its padding, and not at unbounded length (v2 allows 4 GB headers).
    std::string_view shown = s_.substr(0, s_.find_last_not_of(" \t\r\n") + 1);
    const bool cut = shown.size() > 200;
    throw Error(path_ + ": malformed .npy header at character " + std::to_string(i_) + ": " + what + " in \"" +
                std::string(shown.substr(0, 200)) + (cut ? "...\"" : "\""));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_lit() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    const std::size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') fail("escapes are not supported in header strings");
      ++i_;
    }
    if (i_ >= s_.size()) fail("unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  bool bool_lit() {
    if (s_.substr(i_, 4) == "True") return i_ += 4, true;
    if (s_.substr(i_, 5) == "False") return i_ += 5, false;
    fail("expected True or False");
  }
  std::int64_t int_lit() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a non-negative integer");
    std::int64_t v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, peek() - '0', &v)) fail("integer too large");
      ++i_;
    }
    return v;
  }
  Shape tuple_lit() {
    Shape shape;
    expect('(');
    ws();
    while (peek() != ')') {
      shape.push_back(int_lit());
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
    ++i_;
    return shape;
  }

  const std::string& path_;
  std::string_view s_;
  std::size_t i_ = 0;
};

template <typename T>
void convert(const unsigned char* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

}  // namespace

void save_npy(const std::string& path, const Tensor& t) {
  if (t.dtype() != DType::F32 && t.dtype() != DType::I32)
    throw Error("cannot write " + path + ": .npy output is F32 or I32, tensor is " + dtype_name(t.dtype()));
  if (!t.defined()) throw Error("cannot write " + path + ": tensor has no storage");
  std::string shape = "(";
  for (std::size_t i = 0; i < t.shape().size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape()[i]);
  if (t.shape().size() == 1) shape += ",";  // Python's 1-tuple
  shape += ")";
  const char* descr = t.dtype() == DType::I32 ? "<i4" : "<f4";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces, ending in '\n', so magic (6) + version (2) + length (2) + header is a multiple
  // of 64: NumPy does the same so that the data can be memory-mapped with any alignment need.
  const std::size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  if (header.size() > 65535) throw Error("cannot write " + path + ": .npy 1.0 header too long for shape " + shape);

  std::string prefix(kMagic, 6);
  prefix += '\x01';
  prefix += '\x00';
  prefix += static_cast<char>(header.size() & 0xff);
  prefix += static_cast<char>(header.size() >> 8);

  const Tensor host = t.device() == Device::CPU ? t : t.to(Device::CPU);
  io::AtomicFile out(path);
  out.write(prefix.data(), prefix.size());
  out.write(header.data(), header.size());
  out.write(host.data(), host.nbytes());
  out.commit();
}

Tensor load_npy(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int e = errno;
    throw Error(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(::fileno(f.get()), &st) != 0 || !S_ISREG(st.st_mode)) throw Error(path + ": cannot open: not a regular file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);

  unsigned char pre[12];
  if (file_size < 10 || std::fread(pre, 1, 10, f.get()) != 10)
    throw Error(path + ": truncated: " + std::to_string(file_size) + " bytes, too short for a .npy header");
  if (std::memcmp(pre, kMagic, 6) != 0) throw Error(path + ": not a .npy file (missing the \"\\x93NUMPY\" magic string)");
  const int major = pre[6], minor = pre[7];
  std::uint64_t hlen = 0, prefix = 10;
  if (major == 1 && minor == 0) {
    hlen = pre[8] | (std::uint64_t{pre[9]} << 8);
  } else if ((major == 2 || major == 3) && minor == 0) {
    // 2.0 widens the header length to 4 bytes; 3.0 only allows UTF-8 in it.
    if (std::fread(pre + 10, 1, 2, f.get()) != 2) throw Error(path + ": truncated .npy header length");
    hlen = pre[8] | (std::uint64_t{pre[9]} << 8) | (std::uint64_t{pre[10]} << 16) | (std::uint64_t{pre[11]} << 24);
    prefix = 12;
  } else {
    throw Error(path + ": unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor) +
                " (supported: 1.0, 2.0, 3.0)");
  }
  if (hlen > file_size - prefix)
    throw Error(path + ": truncated: header length " + std::to_string(hlen) + " runs past the end of the file (" +
                std::to_string(file_size) + " bytes)");
  std::string text(hlen, '\0');
  if (std::fread(text.data(), 1, hlen, f.get()) != hlen) throw Error(path + ": read error in the .npy header");
  const Header h = DictParser(path, text).parse();

  struct Descr {
    const char* name;
    int size;
  };
  static constexpr Descr kDescrs[] = {{"<f4", 4}, {"<f8", 8}, {"|u1", 1}, {"<u1", 1}, {"|i1", 1},
                                      {"<i1", 1}, {"<i4", 4}, {"<i8", 8}};
  int itemsize = 0;
  for (const auto& d : kDescrs)
    if (h.descr == d.name) itemsize = d.size;
  if (!itemsize)
    throw Error(path + ": unsupported .npy descr '" + h.descr +
                "' (supported: '<f4', '<f8', '|u1', '|i1', '<i4', '<i8'; little-endian only)");
  if (h.fortran) throw Error(path + ": fortran_order True is not supported (store the array in C order)");

  std::uint64_t numel = 1;
  for (auto d : h.shape)
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(d), &numel) || numel > (std::uint64_t{1} << 40))
      throw Error(path + ": shape " + shape_str(h.shape) + " is implausibly large");
  const std::uint64_t expected = numel * static_cast<std::uint64_t>(itemsize);
  const std::uint64_t found = file_size - prefix - hlen;
  if (found < expected)
    throw Error(path + ": truncated: " + h.descr + " " + shape_str(h.shape) + " needs " + std::to_string(expected) +
                " bytes of data, found " + std::to_string(found));
  if (found > expected)
    throw Error(path + ": " + std::to_string(found - expected) + " bytes of trailing garbage after the " +
                std::to_string(expected) + " bytes of data for " + h.descr + " " + shape_str(h.shape));

  Tensor t(h.shape);
  if (h.descr == "<f4") {
    if (expected && std::fread(t.data(), 1, expected, f.get()) != expected) throw Error(path + ": read error in the data");
    return t;
  }
  std::vector<unsigned char> raw(expected);
  if (expected && std::fread(raw.data(), 1, expected, f.get()) != expected) throw Error(path + ": read error in the data");
  float* dst = t.f32();
  const auto n = static_cast<std::size_t>(numel);
  if (h.descr == "<f8") convert<double>(raw.data(), dst, n);
  else if (h.descr == "|u1" || h.descr == "<u1") convert<std::uint8_t>(raw.data(), dst, n);
  else if (h.descr == "|i1" || h.descr == "<i1") convert<std::int8_t>(raw.data(), dst, n);
  else if (h.descr == "<i4") convert<std::int32_t>(raw.data(), dst, n);
  else convert<std::int64_t>(raw.data(), dst, n);
  return t;
}

}  // namespace cuae
