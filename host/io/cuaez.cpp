// The .cuaez file format (cuae/compress.hpp); the quantiser is in host/apps/quantize.cpp.
#include "cuae/compress.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "host/io/atomic_file.hpp"

namespace cuae {

namespace {

constexpr char kMagic[8] = {'C', 'U', 'A', 'E', 'C', 'O', 'D', 'E'};
constexpr std::uint32_t kVersion = 1;

// Fills a buffer sized in advance (little-endian hosts: x86-64, aarch64).
struct Writer {
  std::vector<std::uint8_t>& out;
  std::size_t at = 0;
  void bytes(const void* p, std::size_t n) {
    CUAE_CHECK(out.size() - at >= n, "encode_compressed: buffer too small");
    std::memcpy(out.data() + at, p, n);
    at += n;
  }
  template <class T>
  void put(T v) {
    bytes(&v, sizeof v);
  }
};

struct Reader {
  const std::vector<std::uint8_t>& bytes;
  const std::string& origin;
  std::size_t at = 0;
  template <class T>
  T get(const char* what) {
    if (bytes.size() - at < sizeof(T))
      throw Error(origin + ": truncated: the file ends inside its " + what + " (at byte " + std::to_string(at) + ")");
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
};

std::uint32_t crc(const std::uint8_t* p, std::size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}

std::vector<std::uint8_t> pack(const std::vector<std::uint16_t>& s, int bits) {
  std::vector<std::uint8_t> out((s.size() * static_cast<std::size_t>(bits) + 7) / 8, 0);
  std::size_t bit = 0;
  for (const std::uint16_t v : s)
    for (int b = bits - 1; b >= 0; --b, ++bit)
      if ((v >> b) & 1u) out[bit / 8] |= static_cast<std::uint8_t>(0x80u >> (bit % 8));
  return out;
}

std::vector<std::uint16_t> unpack(const std::vector<std::uint8_t>& p, std::size_t count, int bits) {
  std::vector<std::uint16_t> out(count, 0);
  std::size_t bit = 0;
  for (auto& v : out)
    for (int b = 0; b < bits; ++b, ++bit) v = static_cast<std::uint16_t>((v << 1) | ((p[bit / 8] >> (7 - bit % 8)) & 1u));
  return out;
}

}  // namespace

std::vector<std::uint8_t> encode_compressed(const CompressedCodes& c) {
  const auto k = static_cast<std::uint32_t>(c.quantizer.lo.size());
  CUAE_REQUIRE(k > 0 && c.quantizer.hi.size() == k && c.symbols.size() == static_cast<std::size_t>(c.images) * k,
               "encode_compressed: " + std::to_string(c.symbols.size()) + " symbols for " + std::to_string(c.images) +
                   " images of " + std::to_string(k) + " dimensions");
  std::vector<std::uint8_t> payload = pack(c.symbols, c.quantizer.bits);
  if (c.zlib) {
    uLongf size = compressBound(static_cast<uLong>(payload.size()));
    std::vector<std::uint8_t> z(size);
    CUAE_CHECK(compress2(z.data(), &size, payload.data(), static_cast<uLong>(payload.size()), Z_BEST_COMPRESSION) == Z_OK,
               "encode_compressed: zlib failed");
    z.resize(size);
    payload = std::move(z);
  }
  std::vector<std::uint8_t> out(52 + 8 * static_cast<std::size_t>(k) + 8 + payload.size() + 4);
  Writer w{out};
  w.bytes(kMagic, 8);
  w.put(kVersion);
  w.put(c.model);
  w.put(k);
  w.put(static_cast<std::uint32_t>(c.quantizer.bits));
  w.put(static_cast<std::uint64_t>(c.images));
  w.put(static_cast<std::uint32_t>(c.height));
  w.put(static_cast<std::uint32_t>(c.width));
  w.put(static_cast<std::uint32_t>(c.channels));
  w.put(static_cast<std::uint32_t>(c.zlib ? 1 : 0));
  for (const float v : c.quantizer.lo) w.put(v);
  for (const float v : c.quantizer.hi) w.put(v);
  w.put(static_cast<std::uint64_t>(payload.size()));
  w.bytes(payload.data(), payload.size());
  w.put(crc(out.data(), w.at));
  CUAE_CHECK(w.at == out.size(), "encode_compressed: layout size mismatch");
  return out;
}

CompressedCodes decode_compressed(const std::vector<std::uint8_t>& bytes, const std::string& origin) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw Error(origin + ": not a cuae compressed file (it does not start with \"CUAECODE\")");
  Reader r{bytes, origin, 8};
  const auto version = r.get<std::uint32_t>("version");
  if (version != kVersion)
    throw Error(origin + ": format version " + std::to_string(version) + ", this cuae reads version " + std::to_string(kVersion));
  CompressedCodes c;
  c.model = r.get<std::uint64_t>("model fingerprint");
  const auto k = r.get<std::uint32_t>("code width");
  c.quantizer.bits = static_cast<int>(r.get<std::uint32_t>("bits"));
  const auto n = r.get<std::uint64_t>("image count");
  c.height = static_cast<int>(r.get<std::uint32_t>("height"));
  c.width = static_cast<int>(r.get<std::uint32_t>("width"));
  c.channels = static_cast<int>(r.get<std::uint32_t>("channels"));
  const auto codec = r.get<std::uint32_t>("codec");
  if (k == 0 || k > (1u << 20)) throw Error(origin + ": code width " + std::to_string(k) + " is out of range");
  if (c.quantizer.bits < 1 || c.quantizer.bits > 16) throw Error(origin + ": " + std::to_string(c.quantizer.bits) + " bits per dimension (1..16)");
  if (codec > 1) throw Error(origin + ": unknown codec " + std::to_string(codec));
  if (c.height < 1 || c.width < 1 || c.height > 32768 || c.width > 32768 || (c.channels != 1 && c.channels != 3))
    throw Error(origin + ": image size " + std::to_string(c.height) + "×" + std::to_string(c.width) + "×" + std::to_string(c.channels) + " is out of range");
  // The ranges and the packed symbols must fit in the file: no allocation beyond its size.
  if ((bytes.size() - r.at) / 8 < k) throw Error(origin + ": truncated: the file ends inside its ranges");
  if (n > (std::uint64_t{1} << 40) / k) throw Error(origin + ": " + std::to_string(n) + " images is out of range");
  c.zlib = codec == 1;
  c.images = static_cast<std::int64_t>(n);
  for (std::uint32_t j = 0; j < k; ++j) c.quantizer.lo.push_back(r.get<float>("ranges"));
  for (std::uint32_t j = 0; j < k; ++j) c.quantizer.hi.push_back(r.get<float>("ranges"));
  for (std::uint32_t j = 0; j < k; ++j)
    if (!std::isfinite(c.quantizer.lo[j]) || !std::isfinite(c.quantizer.hi[j]) || c.quantizer.lo[j] > c.quantizer.hi[j])
      throw Error(origin + ": the range of code dimension " + std::to_string(j) + " is not a finite interval");
  const auto size = r.get<std::uint64_t>("payload size");
  if (size > bytes.size() - r.at || bytes.size() - r.at - size != 4)
    throw Error(origin + ": the payload of " + std::to_string(size) + " bytes and its checksum do not fill the file's remaining " +
                std::to_string(bytes.size() - r.at) + " bytes (truncated or trailing bytes)");
  const std::size_t payload_at = r.at;
  r.at += size;
  const auto stored = r.get<std::uint32_t>("checksum");
  if (stored != crc(bytes.data(), payload_at + size)) throw Error(origin + ": checksum mismatch: the file is corrupt");
  const std::uint64_t count = n * k, packed = (count * static_cast<std::uint64_t>(c.quantizer.bits) + 7) / 8;
  std::vector<std::uint8_t> bits(bytes.begin() + static_cast<std::ptrdiff_t>(payload_at),
                                 bytes.begin() + static_cast<std::ptrdiff_t>(payload_at + size));
  if (c.zlib) {
    // Deflate shrinks by at most ~1032:1, which bounds what a valid stream can expand to.
    if (packed / 1032 > size + 1) throw Error(origin + ": the compressed payload is too small for " + std::to_string(n) + " images");
    std::vector<std::uint8_t> raw(packed);
    uLongf got = static_cast<uLongf>(packed);
    if (uncompress(raw.data(), &got, bits.data(), static_cast<uLong>(bits.size())) != Z_OK || got != packed)
      throw Error(origin + ": the zlib payload does not inflate to " + std::to_string(packed) + " bytes of codes");
    bits = std::move(raw);
  } else if (bits.size() != packed) {
    throw Error(origin + ": the payload holds " + std::to_string(bits.size()) + " bytes, " + std::to_string(packed) + " expected");
  }
  c.symbols = unpack(bits, count, c.quantizer.bits);
  return c;
}

std::size_t write_compressed(const std::string& path, const CompressedCodes& c) {
  const std::vector<std::uint8_t> bytes = encode_compressed(c);
  io::AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
  return bytes.size();
}

CompressedCodes read_compressed(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return decode_compressed(bytes, path);
}

std::uint64_t parameter_fingerprint(const std::vector<std::pair<std::string, Tensor>>& parameters) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto mix = [&](const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const std::uint8_t*>(p)[i]) * 0x100000001b3ull;
  };
  for (const auto& [name, t] : parameters) {
    mix(name.data(), name.size());
    for (const std::int64_t d : t.shape()) mix(&d, sizeof d);
    const Tensor host = t.device() == Device::CPU ? t : t.to(Device::CPU);
    mix(host.data(), static_cast<std::size_t>(host.numel()) * sizeof(float));
  }
  return h;
}

}  // namespace cuae
