// Image data on the host: PNG and JPEG files, folders of them, CIFAR-10 binaries, and ImageStream,
// a background reader for collections larger than memory.
//
// Layout: an image is float32, HWC (channels last), values in [0, 1] (8-bit value / 255), flattened
// to height*width*channels floats; a batch is [n, height, width, channels]. For one channel this
// is the layout of the Fashion-MNIST rows of data.hpp.
//
// Every function throws cuae::Error naming the file (or directory) and the fault; nothing is
// printed except the "skipped <file>: <reason>" lines of BadImagePolicy::Skip when no sink is set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuae/data.hpp"
#include "cuae/error.hpp"

namespace cuae {

// What every decoded image is turned into.
struct CUAE_API ImageSpec {
  // Resize: scale to exactly height x width (the aspect ratio is not kept).
  // Crop: scale so the shorter side fits, then cut the centre height x width out of the longer one.
  enum class Fit { Resize, Crop };

  int channels = 3;  // 1 (grey) or 3 (RGB)
  int height = 0;    // both must be set, 1..32768
  int width = 0;
  Fit fit = Fit::Crop;

  std::int64_t features() const { return static_cast<std::int64_t>(height) * width * channels; }
};

// Decodes a PNG (libpng) or JPEG (libjpeg) file, told apart by its first bytes, not its name, into
// spec.height*spec.width*spec.channels floats (HWC, [0, 1]).
//   Channels: grey to RGB replicates; RGB to grey is ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B);
//   alpha is dropped (not composited); palette PNGs are expanded, 16-bit PNGs rounded to 8 bits,
//   grey PNGs of 1/2/4 bits scaled to 8; gamma chunks are ignored (samples are taken as stored).
//   CMYK JPEGs are converted to RGB (Adobe's inverted CMYK when the Adobe marker says so).
//   Resampling: stb_image_resize on linear values, Mitchell filter for downscaling, Catmull-Rom
//   for upscaling, edges clamped; results clamped to [0, 1]. An image already of the target size
//   (or a crop of it at scale 1) is copied exactly. Large JPEGs are decoded at 1/2, 1/4 or 1/8
//   scale (libjpeg's DCT scaling) when that still leaves at least the target size.
// Throws cuae::Error naming the file for: an invalid spec, a file that cannot be opened or is
// empty, a file that is neither PNG nor JPEG, a truncated or corrupt file (libpng's or libjpeg's
// message is included; JPEG corrupt-data warnings count as errors), a zero or implausibly large
// image size.
CUAE_API std::vector<float> decode_image(const std::string& path, const ImageSpec& spec);
// The same for an image file's bytes held in memory; `origin` names it in errors.
CUAE_API std::vector<float> decode_image_bytes(const std::vector<unsigned char>& data, const std::string& origin,
                                               const ImageSpec& spec);

// The image files under dir, recursively: extensions .png, .jpg, .jpeg in any case; files and
// folders whose names start with '.' are ignored (e.g. macOS "._x.jpg" metadata files). Sorted by
// path (byte order), so the order is the same on every machine. Throws cuae::Error if dir does not
// exist, is not a directory, or holds no images.
CUAE_API std::vector<std::string> list_images(const std::string& dir);

// Class names of an image folder: the sorted names of the first-level subfolders when every image
// of list_images(dir) sits in one (label k is the k-th name); empty when some image lies directly
// in dir (then the folder has no labels).
CUAE_API std::vector<std::string> image_folder_classes(const std::string& dir);

// CIFAR-10, binary version: each file is a sequence of 3073-byte records, a label byte (0..9) and
// 3072 pixel bytes (the 32x32 red plane, then green, then blue, rows top to bottom). Returns the
// records of all files in order: images [N, 3072] HWC in [0, 1], labels [N], rows = cols = 32,
// channels = 3.
// Throws cuae::Error for: no files, a missing or unreadable file, an empty file, a size that is not
// a multiple of 3073 (the size is given), a label above 9 (the record index is given).
CUAE_API Dataset load_cifar10(const std::vector<std::string>& files);

// load_cifar10 on dir/data_batch_1.bin .. data_batch_5.bin (train, 50000 images) or
// dir/test_batch.bin (10000 images). Throws cuae::Error naming the directory and the missing file.
CUAE_API Dataset load_cifar10_dir(const std::string& dir, bool train);

// What to do with a file that cannot be decoded.
//   Skip: leave it out, report "<file>: <reason>" to the sink (default: a line
//         "skipped <file>: <reason>" on stderr) and count it.
//   Stop: throw its cuae::Error (which names the file).
// Only decoding errors (cuae::Error) are skipped; anything else (out of memory) always stops.
enum class BadImagePolicy { Skip, Stop };

// Receives each skipped file and the reason (the error without the file name in front). Always
// called in the caller's thread, in the order of the files.
using SkipSink = std::function<void(const std::string& file, const std::string& reason)>;

// Decodes every image of list_images(dir) into memory with `threads` decoding threads (0: one per
// hardware thread); for collections that fit in memory. images [N, spec.features()],
// rows = spec.height, cols = spec.width, channels = spec.channels; labels [N] from image_folder_classes(dir) when it is not
// empty, else no labels. The result does not depend on `threads`. With Stop, the error of the
// first bad file in list order is thrown. With Skip, skipped files are reported to on_skip and left
// out; throws if no image at all could be decoded.
CUAE_API Dataset load_image_folder(const std::string& dir, const ImageSpec& spec,
                                   BadImagePolicy policy = BadImagePolicy::Stop, int threads = 0,
                                   const SkipSink& on_skip = {});

// Options of ImageStream (outside the class so it can be a default argument).
struct CUAE_API ImageStreamOptions {
  int threads = 0;         // decoding threads; 0: hardware threads - 1, at least 1
  int prefetch = 4;        // batches decoded ahead of the one the caller holds (>= 0)
  bool shuffle = true;     // a fresh order per epoch, from (seed, epoch)
  std::uint64_t seed = 0;
  bool drop_last = false;  // leave out a last batch smaller than batch_size
  SkipSink on_skip;        // for BadImagePolicy::Skip; empty: "skipped <file>: <reason>" on stderr
};

// Memory for the batch buffers: both set (e.g. Backend::alloc_host/free_host for pinned memory, so
// the host-to-device copy can be asynchronous) or neither (plain 256-byte-aligned host memory).
struct CUAE_API BatchAllocator {
  std::function<void*(std::size_t bytes)> alloc;
  std::function<void(void*)> free;
};

// Reads and decodes images on background threads and hands out batches in order.
//
//   ImageStream s(list_images(dir), {3, 64, 64}, 128, BadImagePolicy::Skip, opts,
//                 {[&](size_t b) { return be.alloc_host(b); }, [&](void* p) { be.free_host(p); }});
//   for (int e = 0; e < epochs; ++e) {
//     s.start_epoch(e);
//     int n;
//     while (const float* batch = s.next(&n)) { ... n rows of spec.features() floats ... }
//   }
//
// An epoch visits every file once in its epoch order (the file order, or a shuffle determined by
// (seed, epoch) alone). Batches are the epoch order cut into runs of batch_size; with Skip, a
// skipped image's row is taken by the next image of the order, so batches stay full. Batch
// contents depend only on (files, spec, batch_size, seed, epoch, shuffle, drop_last), never on the
// number of threads or on timing.
//
// Design: the decoding threads claim positions of the epoch order in turn and decode them
// independently; finished images are committed strictly in order into the rows of the batch being
// filled (a reorder window of a few images per thread bounds how far ahead they run); a full batch
// is sealed and handed to next() in order. There are prefetch + 1 batch buffers: the one the
// caller holds and up to prefetch being filled or waiting. Threads wait on condition variables,
// never spin. With Stop, the first bad file in epoch order ends the epoch: next() returns the
// batches completed before it and then throws its error in the caller's thread (again on each later
// call, until start_epoch). start_epoch and next are for one consumer thread at a time.
class CUAE_API ImageStream {
 public:
  using Options = ImageStreamOptions;

  // Throws cuae::Error for no files, batch_size < 1, an invalid spec or options, a failed buffer
  // allocation. The threads start here and wait for start_epoch.
  ImageStream(std::vector<std::string> files, const ImageSpec& spec, int batch_size,
              BadImagePolicy policy = BadImagePolicy::Stop, const ImageStreamOptions& options = {},
              const BatchAllocator& allocator = {});
  // Stops the threads (each finishes the image it is decoding) and joins them, even mid-epoch.
  ~ImageStream();
  ImageStream(const ImageStream&) = delete;
  ImageStream& operator=(const ImageStream&) = delete;

  // Starts epoch `epoch` (abandoning any epoch in progress; the last batch pointer becomes invalid)
  // and resets the skip record.
  void start_epoch(int epoch);

  // The next batch of the epoch, [*count, height, width, channels] floats; *count is batch_size
  // except for a last partial batch (never with drop_last). nullptr at the end of the epoch (and
  // *count = 0). The memory stays valid until the next call to next() or start_epoch().
  // Blocks until the batch is ready. Throws the decoding error of policy Stop, or cuae::Error if no
  // epoch was started.
  const float* next(int* count);

  // Files skipped so far in this epoch (including ones decoded ahead of the batches handed out),
  // in epoch order; complete once next() has returned nullptr.
  std::int64_t skipped() const;
  std::vector<std::string> skipped_files() const;

  // ceil(files / batch_size), or floor with drop_last; an upper bound when images are skipped.
  std::int64_t batches_per_epoch() const;
  std::int64_t size() const;  // number of files
  int batch_size() const;
  const ImageSpec& spec() const;
  int threads() const;

 private:
  struct State;  // the threads, buffers and epoch state (host/data/loader.cpp)
  std::unique_ptr<State> s_;
};

}  // namespace cuae
