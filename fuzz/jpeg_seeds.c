/* Writes the JPEG seeds of fuzz/corpus/jpeg (called by make_seeds.py): a grey and an RGB image,
   baseline and progressive, each prefixed with the fuzzer's spec byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

static void write_one(const char* dir, const char* name, int w, int h, int comps, int progressive, unsigned char spec) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "wb");
  if (!f) exit(1);
  fputc(spec, f);
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 80, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  unsigned char* row = malloc((size_t)w * comps);
  for (int y = 0; y < h; ++y) {
    for (int i = 0; i < w * comps; ++i) row[i] = (unsigned char)((y * 31 + i * 7) & 255);
    JSAMPROW r = row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  free(row);
  fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  write_one(argv[1], "grey_9x7", 9, 7, 1, 0, 0x00);
  write_one(argv[1], "rgb_10x6", 10, 6, 3, 0, 0x03);
  write_one(argv[1], "rgb_8x8_progressive", 8, 8, 3, 1, 0x01);
  return 0;
}
