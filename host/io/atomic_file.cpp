#include "host/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cuae/error.hpp"

namespace cuae::io {

namespace {
std::string errno_str(int e) { return std::strerror(e); }

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) throw Error("cannot write a file with an empty path");
  // The pid keeps two processes writing the same checkpoint from sharing a temporary file; the
  // temporary lives in the target's directory so that rename() stays on one file system (atomic).
  temp_ = path_ + ".tmp." + std::to_string(::getpid());
  file_ = std::fopen(temp_.c_str(), "wb");
  if (!file_) {
    const int e = errno;
    throw Error("cannot write " + path_ + ": cannot create temporary file " + temp_ + ": " + errno_str(e));
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  const int e = errno;
  discard();
  committed_ = true;  // nothing left to clean up in the destructor
  throw Error("cannot write " + path_ + ": " + what + (e ? std::string(": ") + errno_str(e) : std::string()));
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (!file_) throw Error("cannot write " + path_ + ": file already committed or failed");
  if (bytes == 0) return;
  errno = 0;
  if (std::fwrite(data, 1, bytes, file_) != bytes) fail("short write to " + temp_);
}

void AtomicFile::commit() {
  if (!file_) throw Error("cannot write " + path_ + ": file already committed or failed");
  errno = 0;
  if (std::fflush(file_) != 0) fail("flushing " + temp_);
  // fsync before rename: otherwise a power cut can leave the new name pointing at empty blocks.
  if (::fsync(::fileno(file_)) != 0) fail("fsync of " + temp_);
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) fail("closing " + temp_);
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail("renaming " + temp_ + " over it");
  committed_ = true;
  // The rename itself is only durable once the directory entry is on disk. A failure here cannot
  // be undone (the new file is already in place), and some file systems refuse fsync on a
  // directory, so it is best effort.
  const int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomic(const std::string& path, const void* data, std::size_t bytes) {
  AtomicFile f(path);
  f.write(data, bytes);
  f.commit();
}

}  // namespace cuae::io
