// safetensors reader/writer on nlohmann::json. The header is parsed with ordered_json so ties in
// the data order (zero-byte tensors) keep the header's order, and through a parser callback that
// rejects duplicate keys, which plain JSON parsing would silently resolve to one of them.
#include "cuae/safetensors.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "host/io/atomic_file.hpp"

namespace cuae {

static_assert(std::endian::native == std::endian::little,
              "safetensors data are little-endian; cuae reads and writes them as raw host bytes");

namespace {

using ojson = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we, so that a corrupt length
// cannot make us allocate gigabytes before failing.
constexpr std::uint64_t kMaxHeader = 100'000'000;

const char* const kOtherDtypes[] = {"BOOL", "U8",  "I8",  "I16", "U16", "I32", "U32",     "I64",
                                    "U64",  "F64", "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

std::uint64_t parse_uint(const std::string& path, const std::string& where, const ojson& v) {
  if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0))
    throw Error(path + ": " + where + " must be a non-negative integer, found " + v.dump());
  return v.get<std::uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const ojson& v) {
  const std::string at = "tensor " + quoted(name);
  if (!v.is_object()) throw Error(path + ": " + at + ": entry must be a JSON object, found " + v.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) throw Error(path + ": " + at + ": missing field \"" + field + "\"");
  for (const auto& [key, _] : v.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(path + ": " + at + ": unexpected field \"" + key + "\"");

  Entry e;
  e.name = name;
  const ojson& dt = v["dtype"];
  if (!dt.is_string()) throw Error(path + ": " + at + ": \"dtype\" must be a string, found " + dt.dump());
  const std::string dts = dt.get<std::string>();
  if (dts == "F32") e.dtype = DType::F32;
  else if (dts == "BF16") e.dtype = DType::BF16;
  else if (dts == "F16") e.dtype = DType::F16;
  else if (std::find(std::begin(kOtherDtypes), std::end(kOtherDtypes), dts) != std::end(kOtherDtypes))
    throw Error(path + ": " + at + ": dtype " + dts + " is valid safetensors but not supported by cuae (F32, BF16, F16)");
  else
    throw Error(path + ": " + at + ": unknown dtype \"" + dts + "\"");

  const ojson& sh = v["shape"];
  if (!sh.is_array()) throw Error(path + ": " + at + ": \"shape\" must be an array, found " + sh.dump());
  std::uint64_t numel = 1;
  for (std::size_t i = 0; i < sh.size(); ++i) {
    const std::uint64_t d = parse_uint(path, at + ": shape[" + std::to_string(i) + "]", sh[i]);
    if (__builtin_mul_overflow(numel, d, &numel) || numel > (std::uint64_t{1} << 60))
      throw Error(path + ": " + at + ": shape " + sh.dump() + " is implausibly large");
    e.shape.push_back(static_cast<std::int64_t>(d));
  }

  const ojson& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    throw Error(path + ": " + at + ": \"data_offsets\" must be [begin, end], found " + off.dump());
  e.begin = parse_uint(path, at + ": data_offsets[0]", off[0]);
  e.end = parse_uint(path, at + ": data_offsets[1]", off[1]);
  if (e.end < e.begin)
    throw Error(path + ": " + at + ": data_offsets " + off.dump() + " end before they begin");
  const std::uint64_t bytes = numel * dtype_size(e.dtype);
  if (e.end - e.begin != bytes)
    throw Error(path + ": " + at + ": data_offsets " + off.dump() + " span " + std::to_string(e.end - e.begin) +
                " bytes but shape " + shape_str(e.shape) + " of " + dts + " needs " + std::to_string(bytes));
  return e;
}

std::string range_str(std::uint64_t b, std::uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + ")";
}

}  // namespace

const Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  std::string names;
  for (const auto& n : order) names += (names.empty() ? "" : ", ") + n;
  throw Error("no tensor named " + quoted(name) + " (the file holds: " + (names.empty() ? "none" : names) + ")");
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson meta = ojson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) throw Error("cannot write " + path + ": a tensor has an empty name");
    if (name == "__metadata__") throw Error("cannot write " + path + ": \"__metadata__\" is reserved, not a tensor name");
    if (!seen.insert(name).second) throw Error("cannot write " + path + ": tensor name " + quoted(name) + " appears twice");
    if (!t.defined()) throw Error("cannot write " + path + ": tensor " + quoted(name) + " has no storage");
    header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    // The only way dump() fails: a name or metadata string that is not valid UTF-8.
    throw Error("cannot write " + path + ": tensor names and metadata must be valid UTF-8: " + e.what());
  }
  // Spaces are valid JSON whitespace; padding to 8 makes the data section 8-byte aligned for
  // readers that map the file and use the bytes in place.
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));

  io::AtomicFile out(path);
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    if (t.nbytes() == 0) continue;
    if (t.device() == Device::CPU) {
      out.write(t.data(), t.nbytes());
    } else {
      // One tensor at a time: a checkpoint never needs a second full copy of the model on the host.
      const Tensor host = t.to(Device::CPU);
      out.write(host.data(), host.nbytes());
    }
  }
  out.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int e = errno;
    throw Error(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(::fileno(f.get()), &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(path + ": cannot open: not a regular file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < 8)
    throw Error(path + ": truncated: " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");
  unsigned char len[8];
  if (std::fread(len, 1, 8, f.get()) != 8) throw Error(path + ": read error in the header length");
  std::uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | len[i];
  if (hlen > file_size - 8)
    throw Error(path + ": header length " + std::to_string(hlen) + " runs past the end of the file (" +
                std::to_string(file_size) + " bytes); not a safetensors file, or truncated");
  if (hlen > kMaxHeader)
    throw Error(path + ": header length " + std::to_string(hlen) + " exceeds the 100 MB limit");
  std::string text(hlen, '\0');
  if (std::fread(text.data(), 1, hlen, f.get()) != hlen) throw Error(path + ": read error in the JSON header");
  const std::uint64_t data_size = file_size - 8 - hlen;

  // A stack of key sets, one per open JSON object, catches duplicate keys at any depth.
  std::vector<std::set<std::string>> keys;
  const ojson::parser_callback_t no_duplicates = [&](int depth, ojson::parse_event_t ev, ojson& parsed) {
    if (ev == ojson::parse_event_t::object_start) keys.emplace_back();
    else if (ev == ojson::parse_event_t::object_end) keys.pop_back();
    else if (ev == ojson::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second)
      throw Error(path + ": JSON header: key " + quoted(parsed.get<std::string>()) + " appears twice" +
                  (depth <= 1 ? "" : " in the same object"));
    return true;
  };
  ojson header;
  try {
    header = ojson::parse(text, no_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": JSON header (" + std::to_string(hlen) + " bytes) is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(path + ": JSON header must be an object, found " + std::string(header.type_name()));

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(path + ": \"__metadata__\" must be an object of strings, found " + v.dump());
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          throw Error(path + ": \"__metadata__\" entry " + quoted(k) + " must be a string, found " + mv.dump());
        out.metadata[k] = mv.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, v));
  }

  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  // The tensors must tile the data section exactly: no overlap (two tensors aliasing bytes), no
  // gap and no unclaimed tail (bytes nobody accounts for, as the reference implementation requires).
  std::uint64_t next = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.end > data_size)
      throw Error(path + ": tensor " + quoted(e.name) + ": data_offsets " + range_str(e.begin, e.end) +
                  " run past the end of the " + std::to_string(data_size) + "-byte data section");
    if (e.begin < next)
      throw Error(path + ": tensor " + quoted(e.name) + ": data_offsets " + range_str(e.begin, e.end) + " overlap tensor " +
                  quoted(prev->name) + " " + range_str(prev->begin, prev->end));
    if (e.begin > next)
      throw Error(path + ": data bytes " + range_str(next, e.begin) + " belong to no tensor (gap before tensor " +
                  quoted(e.name) + ")");
    next = e.end;
    prev = &e;
  }
  if (next != data_size)
    throw Error(path + ": tensors cover " + std::to_string(next) + " bytes but the data section has " +
                std::to_string(data_size) + " (bytes " + range_str(next, data_size) + " belong to no tensor)");

  for (const Entry& e : entries) {
    Tensor t(e.shape, e.dtype, Device::CPU);
    if (t.nbytes() && std::fread(t.data(), 1, t.nbytes(), f.get()) != t.nbytes())
      throw Error(path + ": tensor " + quoted(e.name) + ": read error (file changed while reading?)");
    out.tensors.emplace(e.name, std::move(t));
    out.order.push_back(e.name);
  }
  return out;
}

}  // namespace cuae
