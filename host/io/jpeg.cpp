// encode_jpeg: libjpeg into memory (the compression baseline of cuae compress).
#include <csetjmp>
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cuae/image.hpp"

namespace cuae {

namespace {

struct JpegEncodeError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

extern "C" void jpeg_encode_fail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegEncodeError*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}

// Everything after setjmp lives in plain storage, so the jump leaves nothing unwound.
bool compress(jpeg_compress_struct* c, JpegEncodeError* err, const std::vector<JSAMPLE>& rows, int h, int w, int channels,
              int quality, unsigned char** out, unsigned long* size) {
  if (setjmp(err->jump)) return false;
  jpeg_create_compress(c);
  jpeg_mem_dest(c, out, size);
  c->image_width = static_cast<JDIMENSION>(w);
  c->image_height = static_cast<JDIMENSION>(h);
  c->input_components = channels;
  c->in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(c);
  jpeg_set_quality(c, quality, TRUE);
  jpeg_start_compress(c, TRUE);
  while (c->next_scanline < c->image_height) {
    JSAMPROW row = const_cast<JSAMPLE*>(rows.data()) + static_cast<std::size_t>(c->next_scanline) * w * channels;
    jpeg_write_scanlines(c, &row, 1);
  }
  jpeg_finish_compress(c);
  return true;
}

}  // namespace

std::vector<std::uint8_t> encode_jpeg(const float* pixels, int height, int width, int channels, int quality) {
  CUAE_REQUIRE(height >= 1 && width >= 1 && (channels == 1 || channels == 3) && quality >= 1 && quality <= 100,
               "encode_jpeg: " + std::to_string(height) + "×" + std::to_string(width) + "×" + std::to_string(channels) +
                   " at quality " + std::to_string(quality) + " (1 or 3 channels, quality 1..100)");
  std::vector<JSAMPLE> rows(static_cast<std::size_t>(height) * width * channels);
  for (std::size_t i = 0; i < rows.size(); ++i)
    rows[i] = static_cast<JSAMPLE>(std::lround(std::clamp(pixels[i], 0.0f, 1.0f) * 255.0f));
  jpeg_compress_struct c{};
  JpegEncodeError err{};
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_encode_fail;
  unsigned char* out = nullptr;
  unsigned long size = 0;
  const bool ok = compress(&c, &err, rows, height, width, channels, quality, &out, &size);
  jpeg_destroy_compress(&c);
  std::vector<std::uint8_t> bytes;
  if (ok) bytes.assign(out, out + size);
  std::free(out);
  if (!ok) throw Error(std::string("encode_jpeg: libjpeg: ") + err.message);
  return bytes;
}

}  // namespace cuae
