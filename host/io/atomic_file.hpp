// Atomic file replacement for everything cuae writes whole (checkpoints, .npy, PNG): bytes go to
// "<path>.tmp.<pid>" beside the target, are flushed and fsync'ed, then renamed over the target and
// the directory is fsync'ed. A crash or an error at any point leaves either the old file or the new
// one, never a half-written file under the final name. Internal header (not installed).
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace cuae::io {

class AtomicFile {
 public:
  // Creates the temporary file; throws cuae::Error naming `path` if that fails (for example when
  // the directory does not exist or is not writable).
  explicit AtomicFile(std::string path);
  // Without a successful commit(), the temporary file is closed and removed: the target is untouched.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes; throws cuae::Error naming the target on a short write (disk full, I/O error).
  void write(const void* data, std::size_t bytes);
  // Flush, fsync, rename over the target, fsync the directory. Throws on failure (and cleans up).
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(const std::string& what);
  void discard() noexcept;

  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Writes the whole buffer to `path` atomically (one AtomicFile, one write, commit).
void write_file_atomic(const std::string& path, const void* data, std::size_t bytes);

}  // namespace cuae::io
