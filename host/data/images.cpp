// Image decoding (PNG via libpng, JPEG via libjpeg), resampling (stb_image_resize), image folder
// listing and CIFAR-10 binaries.
//
// libpng and libjpeg report fatal errors by longjmp. Each library call sequence runs inside a small
// function whose only automatic variables are plain C data, with its own setjmp; the library
// objects are owned by RAII holders in the calling C++ frame, which the longjmp never crosses. So
// an error frees everything and becomes a cuae::Error, and no destructor is ever skipped.
#include <png.h>
#include <stb/stb_image_resize.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "cuae/images.hpp"

namespace cuae {

namespace {

// Above this many pixels an image is taken as corrupt rather than allocated (about 16k x 16k).
constexpr std::uint64_t kMaxPixels = std::uint64_t{1} << 28;

std::string hex_bytes(const std::vector<unsigned char>& b, std::size_t n) {
  std::string s;
  char buf[8];
  for (std::size_t i = 0; i < std::min(n, b.size()); ++i) {
    std::snprintf(buf, sizeof buf, "%s%02x", i ? " " : "", b[i]);
    s += buf;
  }
  return s;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::vector<unsigned char> read_whole_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    throw Error(path + ": cannot open: " + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) throw Error(path + ": cannot open: is a directory");
  if (st.st_size > (off_t{1} << 31))
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes is implausibly large for an image or data batch");
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int e = errno;
    throw Error(path + ": cannot open: " + std::strerror(e));
  }
  std::vector<unsigned char> data;
  // The size from stat is a hint only (the file may change); read until the end either way.
  data.reserve(static_cast<std::size_t>(std::max<off_t>(st.st_size, 0)) + 1);
  unsigned char buf[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    data.insert(data.end(), buf, buf + n);
    if (n < sizeof buf) break;
  }
  if (std::ferror(f.get())) {
    const int e = errno;
    throw Error(path + ": read error: " + std::strerror(e));
  }
  return data;
}

// 8-bit interleaved pixels straight from a decoder; channels 1 (grey) or 3 (RGB).
struct Raw {
  std::vector<unsigned char> pixels;
  int width = 0, height = 0, channels = 0;
  // The part of the stored image that holds the original picture, in stored pixels: a JPEG
  // decoded at 1/s scale covers the original (w, h) with w/s x h/s pixels (the last partial one
  // overhangs). scale = original pixels per stored pixel.
  double scale = 1.0;
  int orig_width = 0, orig_height = 0;
};

void check_size(const std::string& path, const char* kind, std::uint64_t w, std::uint64_t h) {
  if (w == 0 || h == 0)
    throw Error(path + ": " + kind + " of zero size (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (w * h > kMaxPixels)
    throw Error(path + ": " + kind + " of " + std::to_string(w) + "x" + std::to_string(h) + " is implausibly large");
}

// ---- PNG ----------------------------------------------------------------------------------

struct PngIo {
  const unsigned char* data;
  std::size_t size;
  std::size_t pos;
  char message[256];
  char warning[256];  // the last warning: libpng often warns with the cause, then fails generically
};

extern "C" void png_fail(png_structp png, png_const_charp msg) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof io->message, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

extern "C" void png_keep_warning(png_structp png, png_const_charp msg) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->warning, sizeof io->warning, "%s", msg ? msg : "");
}

std::string png_message(const PngIo& io) {
  std::string m = io.message;
  if (io.warning[0]) m += std::string(" (") + io.warning + ")";
  return m;
}

extern "C" void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (io->size - io->pos < n) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "truncated: the file ends after %zu bytes", io->size);
    png_error(png, msg);
  }
  std::memcpy(out, io->data + io->pos, n);
  io->pos += n;
}

struct PngHeader {
  png_uint_32 width, height;
  int channels, bit_depth;
};

// Reads the header and sets the transforms to 8-bit grey or RGB without alpha. False on error
// (the message is in the PngIo).
bool png_start(png_structp png, png_infop info, PngHeader* h) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // Rounds v * 255 / 65535 to nearest (stripping the low byte would truncate).
  if (depth == 16) png_set_scale_16(png);
  png_set_strip_alpha(png);  // also drops the alpha a palette's tRNS chunk expands into
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h->width = png_get_image_width(png, info);
  h->height = png_get_image_height(png, info);
  h->channels = png_get_channels(png, info);
  h->bit_depth = png_get_bit_depth(png, info);
  return true;
}

bool png_finish(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);  // reads up to IEND, so a file cut after the pixels is caught too
  return true;
}

struct PngHolder {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngHolder() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

Raw decode_png(const std::string& path, const std::vector<unsigned char>& data) {
  PngIo io{data.data(), data.size(), 0, {0}, {0}};
  PngHolder h;
  h.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_fail, png_keep_warning);
  if (!h.png) throw Error(path + ": cannot decode PNG: libpng could not allocate its state");
  h.info = png_create_info_struct(h.png);
  if (!h.info) throw Error(path + ": cannot decode PNG: libpng could not allocate its state");
  png_set_read_fn(h.png, &io, png_read_memory);
  PngHeader head{};
  if (!png_start(h.png, h.info, &head)) throw Error(path + ": corrupt PNG: libpng: " + png_message(io));
  check_size(path, "PNG", head.width, head.height);
  if (head.bit_depth != 8 || (head.channels != 1 && head.channels != 3))
    throw Error(path + ": unsupported PNG layout after conversion: " + std::to_string(head.channels) + " channels of " +
                std::to_string(head.bit_depth) + " bits");
  Raw r;
  r.width = r.orig_width = static_cast<int>(head.width);
  r.height = r.orig_height = static_cast<int>(head.height);
  r.channels = head.channels;
  const std::size_t stride = static_cast<std::size_t>(r.width) * r.channels;
  r.pixels.resize(stride * r.height);
  std::vector<png_bytep> rows(static_cast<std::size_t>(r.height));
  for (int y = 0; y < r.height; ++y) rows[static_cast<std::size_t>(y)] = r.pixels.data() + stride * y;
  if (!png_finish(h.png, h.info, rows.data())) throw Error(path + ": corrupt PNG: libpng: " + png_message(io));
  return r;
}

// ---- JPEG ---------------------------------------------------------------------------------

struct JpegState {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr err;
  std::jmp_buf jump;
  bool created;
  char message[JMSG_LENGTH_MAX];
};

extern "C" void jpeg_fail(j_common_ptr c) {
  auto* s = static_cast<JpegState*>(c->client_data);
  (*c->err->format_message)(c, s->message);
  std::longjmp(s->jump, 1);
}

// libjpeg reports corrupt data as warnings and goes on with made-up pixels (grey for a truncated
// file). Those are errors here; only warnings that leave the pixels intact are let through.
extern "C" void jpeg_message(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  switch (c->err->msg_code) {
    case JWRN_JFIF_MAJOR:       // unknown JFIF revision
    case JWRN_ADOBE_XFORM:      // unknown Adobe transform code
    case JWRN_EXTRANEOUS_DATA:  // junk bytes between markers, skipped
    case JWRN_BOGUS_ICC:        // a bad ICC profile marker (the profile is not used)
      return;
    default: jpeg_fail(c);
  }
}

extern "C" void jpeg_silent(j_common_ptr) {}

// Reads the header, picks the output colour space and DCT scale and starts decompression.
bool jpeg_start(JpegState* s, const unsigned char* data, std::size_t size, int want_channels, int need_w,
                int need_h) {
  if (setjmp(s->jump)) return false;
  jpeg_create_decompress(&s->cinfo);
  s->created = true;
  jpeg_mem_src(&s->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&s->cinfo, TRUE);
  switch (s->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: s->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: s->cinfo.out_color_space = JCS_CMYK; break;
    case JCS_YCbCr:
      // Y is the ITU-R 601 luma of the encoded RGB: a grey target needs no chroma at all.
      s->cinfo.out_color_space = want_channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
      break;
    default: s->cinfo.out_color_space = JCS_RGB; break;
  }
  // The smallest DCT scale that still leaves at least the target size in both directions.
  for (int denom : {8, 4, 2}) {
    s->cinfo.scale_num = 1;
    s->cinfo.scale_denom = static_cast<unsigned>(denom);
    jpeg_calc_output_dimensions(&s->cinfo);
    if (static_cast<int>(s->cinfo.image_width / denom) >= need_w &&
        static_cast<int>(s->cinfo.image_height / denom) >= need_h)
      break;
    s->cinfo.scale_denom = 1;
  }
  jpeg_start_decompress(&s->cinfo);
  return true;
}

bool jpeg_finish(JpegState* s, unsigned char* out, std::size_t stride) {
  if (setjmp(s->jump)) return false;
  while (s->cinfo.output_scanline < s->cinfo.output_height) {
    JSAMPROW row = out + stride * s->cinfo.output_scanline;
    jpeg_read_scanlines(&s->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&s->cinfo);  // reads to EOI: a file cut after the last scan is caught
  return true;
}

struct JpegHolder {
  std::unique_ptr<JpegState> s = std::make_unique<JpegState>();
  ~JpegHolder() {
    if (s->created) jpeg_destroy_decompress(&s->cinfo);
  }
};

Raw decode_jpeg(const std::string& path, const std::vector<unsigned char>& data, const ImageSpec& spec) {
  JpegHolder h;
  JpegState* s = h.s.get();
  s->created = false;
  s->message[0] = 0;
  s->cinfo.err = jpeg_std_error(&s->err);
  s->cinfo.client_data = s;  // kept by jpeg_create_decompress
  s->err.error_exit = jpeg_fail;
  s->err.emit_message = jpeg_message;
  s->err.output_message = jpeg_silent;
  // Crop needs both sides at least the target; so does Resize when it shrinks.
  if (!jpeg_start(s, data.data(), data.size(), spec.channels, spec.width, spec.height))
    throw Error(path + ": corrupt JPEG: libjpeg: " + s->message);
  check_size(path, "JPEG", s->cinfo.image_width, s->cinfo.image_height);
  Raw r;
  r.width = static_cast<int>(s->cinfo.output_width);
  r.height = static_cast<int>(s->cinfo.output_height);
  r.orig_width = static_cast<int>(s->cinfo.image_width);
  r.orig_height = static_cast<int>(s->cinfo.image_height);
  r.scale = static_cast<double>(s->cinfo.scale_denom) / s->cinfo.scale_num;
  const int comps = s->cinfo.output_components;
  if (comps != 1 && comps != 3 && comps != 4)
    throw Error(path + ": unsupported JPEG with " + std::to_string(comps) + " colour components");
  const std::size_t stride = static_cast<std::size_t>(r.width) * comps;
  std::vector<unsigned char> px(stride * r.height);
  if (!jpeg_finish(s, px.data(), stride)) throw Error(path + ": corrupt JPEG: libjpeg: " + s->message);
  if (comps == 4) {
    // CMYK to RGB as R = (255 - C)(255 - K) / 255. Adobe's writers store CMYK inverted (255 - C),
    // which the Adobe marker announces.
    const bool inverted = s->cinfo.saw_Adobe_marker;
    const std::size_t n = static_cast<std::size_t>(r.width) * r.height;
    r.pixels.resize(n * 3);
    for (std::size_t i = 0; i < n; ++i) {
      const unsigned char* p = &px[i * 4];
      const int k = inverted ? p[3] : 255 - p[3];
      for (int c = 0; c < 3; ++c) {
        const int v = inverted ? p[c] : 255 - p[c];
        r.pixels[i * 3 + c] = static_cast<unsigned char>((v * k + 127) / 255);
      }
    }
    r.channels = 3;
  } else {
    r.pixels = std::move(px);
    r.channels = comps;
  }
  return r;
}

// ---- conversion and resampling ------------------------------------------------------------

void check_spec(const std::string& path, const ImageSpec& spec) {
  if (spec.channels != 1 && spec.channels != 3)
    throw Error(path + ": invalid ImageSpec: channels " + std::to_string(spec.channels) + " (must be 1 or 3)");
  if (spec.height < 1 || spec.width < 1 || spec.height > 32768 || spec.width > 32768)
    throw Error(path + ": invalid ImageSpec: height x width " + std::to_string(spec.height) + "x" +
                std::to_string(spec.width) + " (each must be 1..32768)");
}

// The source rectangle, in stored pixels, that maps onto the whole output.
struct Region {
  double x0, y0, x1, y1;
};

Region source_region(const Raw& r, const ImageSpec& spec) {
  const double ow = spec.width, oh = spec.height;
  const double iw = r.orig_width, ih = r.orig_height;
  double x0 = 0, y0 = 0, w = iw, h = ih;
  if (spec.fit == ImageSpec::Fit::Crop) {
    // Scale so the shorter side fits: the larger of the two ratios.
    const double s = std::max(ow / iw, oh / ih);
    w = std::min(iw, ow / s);
    h = std::min(ih, oh / s);
    x0 = (iw - w) / 2;
    y0 = (ih - h) / 2;
    // At scale 1 the crop is a whole number of pixels: align it to the pixel grid so the result is
    // an exact copy rather than a half-pixel shifted resample.
    if (s == 1.0) {
      x0 = std::floor(x0);
      y0 = std::floor(y0);
    }
  }
  return {x0 / r.scale, y0 / r.scale, (x0 + w) / r.scale, (y0 + h) / r.scale};
}

void resample(const std::string& path, const float* src, int sw, int sh, int ch, const Region& g, float* dst,
              int ow, int oh) {
  const bool whole = g.x0 == 0 && g.y0 == 0 && g.x1 == sw && g.y1 == sh;
  const bool integral = g.x0 == std::floor(g.x0) && g.y0 == std::floor(g.y0);
  if (g.x1 - g.x0 == ow && g.y1 - g.y0 == oh && (whole || integral)) {
    const auto x0 = static_cast<std::size_t>(g.x0), y0 = static_cast<std::size_t>(g.y0);
    for (int y = 0; y < oh; ++y)
      std::memcpy(dst + static_cast<std::size_t>(y) * ow * ch, src + ((y0 + y) * sw + x0) * ch,
                  sizeof(float) * ow * ch);
    return;
  }
  const int ok = stbir_resize_region(src, sw, sh, 0, dst, ow, oh, 0, STBIR_TYPE_FLOAT, ch, STBIR_ALPHA_CHANNEL_NONE,
                                     0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT, STBIR_FILTER_DEFAULT,
                                     STBIR_COLORSPACE_LINEAR, nullptr, static_cast<float>(g.x0 / sw),
                                     static_cast<float>(g.y0 / sh), static_cast<float>(g.x1 / sw),
                                     static_cast<float>(g.y1 / sh));
  if (!ok) throw Error(path + ": resampling to " + std::to_string(ow) + "x" + std::to_string(oh) + " failed (out of memory)");
  // The cubic filters' negative lobes overshoot a little at sharp edges.
  for (std::size_t i = 0, n = static_cast<std::size_t>(ow) * oh * ch; i < n; ++i) dst[i] = std::clamp(dst[i], 0.0f, 1.0f);
}

std::vector<float> to_spec(const std::string& path, const Raw& r, const ImageSpec& spec) {
  const std::size_t n = static_cast<std::size_t>(r.width) * r.height;
  // Channel conversion at the source size when it shrinks the data (RGB to grey), after resampling
  // when it grows it (grey to RGB).
  const int work = spec.channels == 1 ? 1 : r.channels;
  std::vector<float> src(n * work);
  if (r.channels == 3 && work == 1) {
    for (std::size_t i = 0; i < n; ++i) {
      const unsigned char* p = &r.pixels[i * 3];
      src[i] = (0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]) / 255.0f;
    }
  } else {
    for (std::size_t i = 0; i < n * work; ++i) src[i] = r.pixels[i] / 255.0f;
  }
  const std::size_t out_px = static_cast<std::size_t>(spec.width) * spec.height;
  std::vector<float> out(out_px * spec.channels);
  resample(path, src.data(), r.width, r.height, work, source_region(r, spec), out.data(), spec.width, spec.height);
  if (work == 1 && spec.channels == 3)
    for (std::size_t i = out_px; i-- > 0;) {  // backwards: pixel i moves to 3i >= i
      const float v = out[i];
      out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = v;
    }
  return out;
}

bool has_image_extension(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

std::vector<float> decode_image(const std::string& path, const ImageSpec& spec) {
  check_spec(path, spec);
  return decode_image_bytes(read_whole_file(path), path, spec);
}

std::vector<float> decode_image_bytes(const std::vector<unsigned char>& data, const std::string& path, const ImageSpec& spec) {
  check_spec(path, spec);
  if (data.empty()) throw Error(path + ": empty file (0 bytes), not an image");
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Raw raw;
  if (data.size() >= 8 && std::memcmp(data.data(), kPng, 8) == 0)
    raw = decode_png(path, data);
  else if (data.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    raw = decode_jpeg(path, data, spec);
  else
    throw Error(path + ": not a PNG or JPEG file (it starts with bytes " + hex_bytes(data, 8) + ")");
  return to_spec(path, raw, spec);
}

std::vector<std::string> list_images(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) throw Error(dir + ": image directory does not exist");
  if (!fs::is_directory(st)) throw Error(dir + ": not a directory");
  std::vector<std::string> out;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(type_ec) && has_image_extension(it->path())) out.push_back(it->path().string());
  }
  if (ec) throw Error(dir + ": cannot list: " + ec.message());
  if (out.empty()) throw Error(dir + ": no images (.png, .jpg, .jpeg) found in it or its subfolders");
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// The first folder of `file` below `dir` (list_images builds every path as dir + "/" + relative
// path), or "" when the file lies directly in dir.
std::string first_folder(const std::string& dir, const std::string& file) {
  std::string rel = file.substr(std::min(dir.size(), file.size()));
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  const auto slash = rel.find('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::vector<std::string> classes_of(const std::string& dir, const std::vector<std::string>& files) {
  std::vector<std::string> names;
  for (const auto& f : files) {
    std::string c = first_folder(dir, f);
    if (c.empty()) return {};
    names.push_back(std::move(c));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// The reason part of a decoding error, without the "<file>: " in front.
std::string reason_of(const std::string& file, const std::string& msg) {
  return msg.rfind(file + ": ", 0) == 0 ? msg.substr(file.size() + 2) : msg;
}

}  // namespace

std::vector<std::string> image_folder_classes(const std::string& dir) { return classes_of(dir, list_images(dir)); }

Dataset load_image_folder(const std::string& dir, const ImageSpec& spec, BadImagePolicy policy, int threads,
                          const SkipSink& on_skip) {
  check_spec(dir, spec);
  if (threads < 0) throw Error(dir + ": load_image_folder: threads must be >= 0 (0: one per hardware thread), got " +
                               std::to_string(threads));
  const std::vector<std::string> files = list_images(dir);
  const std::vector<std::string> classes = classes_of(dir, files);
  const auto n = static_cast<std::int64_t>(files.size());
  const std::int64_t features = spec.features();
  Tensor images({n, features});
  float* rows = images.f32();
  std::vector<std::string> errors(files.size());
  std::vector<char> bad(files.size(), 0);

  // Files are claimed in list order; with Stop, nobody claims past the first bad file seen, so
  // every file before it is decoded and the first bad file in list order is always the one found.
  std::atomic<std::int64_t> next{0}, first_bad{n};
  std::atomic<bool> abort{false};
  std::mutex fatal_mutex;
  std::exception_ptr fatal;
  auto work = [&] {
    for (;;) {
      const std::int64_t i = next.fetch_add(1);
      if (i >= n || abort.load() || (policy == BadImagePolicy::Stop && i > first_bad.load())) return;
      const auto u = static_cast<std::size_t>(i);
      try {
        const std::vector<float> px = decode_image(files[u], spec);
        std::memcpy(rows + i * features, px.data(), sizeof(float) * px.size());
      } catch (const Error& e) {
        bad[u] = 1;
        errors[u] = e.what();
        for (std::int64_t cur = first_bad.load(); i < cur && !first_bad.compare_exchange_weak(cur, i);) {
        }
      } catch (...) {
        const std::lock_guard<std::mutex> lock(fatal_mutex);
        if (!fatal) fatal = std::current_exception();
        abort = true;
      }
    }
  };
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const auto count = static_cast<int>(std::min<std::int64_t>(threads > 0 ? threads : hw, n));
  {
    std::vector<std::thread> pool;
    struct Joiner {
      std::vector<std::thread>& p;
      ~Joiner() {
        for (auto& t : p) t.join();
      }
    } joiner{pool};
    try {
      for (int t = 1; t < count; ++t) pool.emplace_back(work);
    } catch (const std::system_error& e) {
      abort = true;  // the started threads stop and are joined
      throw Error(dir + ": cannot start image decoding thread " + std::to_string(pool.size() + 1) + " of " +
                  std::to_string(count - 1) + ": " + e.what() + " (lower [data] threads)");
    } catch (...) {
      abort = true;
      throw;
    }
    work();
  }
  if (fatal) std::rethrow_exception(fatal);

  std::vector<std::int64_t> label_of(files.size(), -1);
  if (!classes.empty())
    for (std::size_t i = 0; i < files.size(); ++i)
      label_of[i] = std::lower_bound(classes.begin(), classes.end(), first_folder(dir, files[i])) - classes.begin();
  std::int64_t kept = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (bad[i]) {
      if (policy == BadImagePolicy::Stop) throw Error(errors[i]);
      const std::string reason = reason_of(files[i], errors[i]);
      if (on_skip)
        on_skip(files[i], reason);
      else
        std::fprintf(stderr, "skipped %s: %s\n", files[i].c_str(), reason.c_str());
      continue;
    }
    if (kept != static_cast<std::int64_t>(i))
      std::memmove(rows + kept * features, rows + static_cast<std::int64_t>(i) * features, sizeof(float) * features);
    label_of[static_cast<std::size_t>(kept)] = label_of[i];
    ++kept;
  }
  if (kept == 0) throw Error(dir + ": none of its " + std::to_string(n) + " images could be decoded");
  Dataset d;
  d.images = kept == n ? images : images.rows(0, kept);
  if (!classes.empty()) {
    d.labels = Tensor({kept});
    for (std::int64_t i = 0; i < kept; ++i) d.labels.f32()[i] = static_cast<float>(label_of[static_cast<std::size_t>(i)]);
  }
  d.rows = spec.height;
  d.cols = spec.width;
  d.channels = spec.channels;
  const std::string base = std::filesystem::path(dir).lexically_normal().filename().string();
  d.name = base.empty() ? std::filesystem::path(dir).lexically_normal().parent_path().filename().string() : base;
  if (d.name.empty()) d.name = dir;
  return d;
}

// ---- CIFAR-10 -----------------------------------------------------------------------------

Dataset load_cifar10(const std::vector<std::string>& files) {
  constexpr std::size_t kRecord = 3073, kPlane = 1024;
  if (files.empty()) throw Error("load_cifar10: no files given");
  std::vector<std::vector<unsigned char>> contents;
  std::int64_t n = 0;
  for (const auto& f : files) {
    contents.push_back(read_whole_file(f));
    const std::size_t size = contents.back().size();
    if (size == 0) throw Error(f + ": empty file, expected CIFAR-10 records of 3073 bytes");
    if (size % kRecord != 0)
      throw Error(f + ": size " + std::to_string(size) + " bytes is not a multiple of the 3073-byte CIFAR-10 record (" +
                  std::to_string(size % kRecord) + " bytes over " + std::to_string(size / kRecord) +
                  " whole records); not a CIFAR-10 binary file?");
    n += static_cast<std::int64_t>(size / kRecord);
  }
  Dataset d;
  d.rows = d.cols = 32;
  d.channels = 3;
  d.images = Tensor({n, static_cast<std::int64_t>(kPlane * 3)});
  d.labels = Tensor({n});
  float* img = d.images.f32();
  float* lab = d.labels.f32();
  std::int64_t i = 0;
  for (std::size_t fi = 0; fi < files.size(); ++fi) {
    const auto& bytes = contents[fi];
    for (std::size_t rec = 0; rec < bytes.size() / kRecord; ++rec, ++i) {
      const unsigned char* p = &bytes[rec * kRecord];
      if (p[0] > 9)
        throw Error(files[fi] + ": record " + std::to_string(rec) + " has label " + std::to_string(p[0]) +
                    " (CIFAR-10 labels are 0..9); not a CIFAR-10 binary file? (CIFAR-100 records are 3074 bytes)");
      lab[i] = p[0];
      // Planar RGB to interleaved HWC.
      float* out = img + i * static_cast<std::int64_t>(kPlane * 3);
      for (std::size_t px = 0; px < kPlane; ++px)
        for (std::size_t c = 0; c < 3; ++c) out[px * 3 + c] = p[1 + c * kPlane + px] / 255.0f;
    }
    contents[fi].clear();
    contents[fi].shrink_to_fit();
  }
  d.name = files.size() == 1 ? "cifar-10/" + std::filesystem::path(files[0]).filename().string() : "cifar-10";
  return d;
}

Dataset load_cifar10_dir(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train)
    for (int b = 1; b <= 5; ++b) names.push_back("data_batch_" + std::to_string(b) + ".bin");
  else
    names.push_back("test_batch.bin");
  std::vector<std::string> files;
  for (const auto& name : names) {
    const std::string f = join(dir, name);
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0 || S_ISDIR(st.st_mode))
      throw Error("CIFAR-10 file missing in " + dir + ": " + name + " (expected data_batch_1.bin .. data_batch_5.bin and "
                  "test_batch.bin of the binary version)");
    files.push_back(f);
  }
  Dataset d = load_cifar10(files);
  d.name = std::string("cifar-10/") + (train ? "train" : "test");
  return d;
}

}  // namespace cuae
