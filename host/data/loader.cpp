// ImageStream: decoding threads feeding a bounded ring of batch buffers (see images.hpp for the
// contract and the design).
//
// Everything shared lives in State under one mutex. A decoding thread holds the lock only to claim
// a position, to store its result and to reserve rows; decoding and copying pixels into a batch
// happen outside it. Positions are committed in epoch order, so which image lands in which row
// depends only on the order and on which files fail, never on thread timing.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <random>
#include <system_error>
#include <thread>
#include <utility>

#include "cuae/images.hpp"

namespace cuae {

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Fisher-Yates with our own bounded draws: std::shuffle and the standard distributions are not
// specified exactly, and the order must be the same with every standard library.
void shuffle_order(std::vector<std::int64_t>& v, std::uint64_t seed, int epoch) {
  std::mt19937_64 gen(splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(static_cast<std::uint32_t>(epoch))));
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::uint64_t bound = i;
    // Rejection keeps the draw uniform: accept only below the largest multiple of bound.
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % bound;
    std::uint64_t r;
    do r = gen();
    while (r >= limit);
    std::swap(v[i - 1], v[static_cast<std::size_t>(r % bound)]);
  }
}

std::string reason_of(const std::string& file, const std::string& msg) {
  return msg.rfind(file + ": ", 0) == 0 ? msg.substr(file.size() + 2) : msg;
}

}  // namespace

struct ImageStream::State {
  struct Slot {
    float* data = nullptr;
    int count = 0;    // rows reserved
    int copying = 0;  // rows reserved whose pixels are still being copied in
    bool sealed = false;
  };
  // One position of the reorder window: a decoded image or its error, waiting for its turn.
  struct Pending {
    bool ready = false;
    std::vector<float> pixels;
    bool bad_image = false;  // a cuae::Error from decoding (skippable)
    std::string message;
    std::exception_ptr error;
  };

  std::vector<std::string> files;
  ImageSpec spec;
  int batch = 0;
  BadImagePolicy policy = BadImagePolicy::Stop;
  ImageStreamOptions options;
  BatchAllocator allocator;
  std::size_t row_floats = 0;

  std::mutex mutex;
  std::condition_variable work_cv;      // decoding threads: a position to claim or commit, or stop
  std::condition_variable consumer_cv;  // next(): a batch complete, the end, or an error
  std::condition_variable idle_cv;      // start_epoch: no thread is working for the old epoch

  std::vector<Slot> slots;
  std::vector<int> free_slots;
  std::vector<int> sealed;  // FIFO of sealed buffers in batch order, front at sealed_head
  std::size_t sealed_head = 0;
  int filling = -1;  // the buffer rows are being committed to
  int held = -1;     // the buffer the caller holds

  std::vector<Pending> window;
  std::vector<std::int64_t> order;
  std::int64_t claim = 0;   // next position to decode
  std::int64_t commit = 0;  // next position to commit
  int active = 0;           // threads decoding or copying outside the lock
  bool started = false, cancel = false, finished = false, stop = false;
  std::exception_ptr error;
  std::vector<std::string> skipped;
  std::vector<std::pair<std::string, std::string>> log;  // skips not yet given to the sink

  std::vector<std::thread> workers;

  std::int64_t n() const { return static_cast<std::int64_t>(order.size()); }
  Pending& at(std::int64_t p) { return window[static_cast<std::size_t>(p % static_cast<std::int64_t>(window.size()))]; }

  bool epoch_running() const { return started && !cancel && !stop && !finished && !error; }
  bool can_claim() const {
    return epoch_running() && claim < n() && claim < commit + static_cast<std::int64_t>(window.size());
  }
  // The next position in order is decoded and has somewhere to go.
  bool can_commit() {
    if (!epoch_running() || commit >= n() || !at(commit).ready) return false;
    const Pending& e = at(commit);
    return e.error || filling >= 0 || !free_slots.empty();
  }

  // The buffer is complete once sealed and every copy into it has landed.
  void maybe_publish(int slot) {
    Slot& s = slots[static_cast<std::size_t>(slot)];
    if (s.sealed && s.copying == 0) consumer_cv.notify_all();
  }

  void seal(int slot) {
    slots[static_cast<std::size_t>(slot)].sealed = true;
    sealed.push_back(slot);
    maybe_publish(slot);
  }

  void end_epoch_if_done() {
    if (finished || commit < n() || error) return;
    if (filling >= 0) {
      Slot& s = slots[static_cast<std::size_t>(filling)];
      if (options.drop_last && s.count < batch) {
        // Rows may still be copying in; the buffer is only reused after start_epoch, which waits
        // for every copy to finish.
        s.count = 0;
        free_slots.push_back(filling);
      } else {
        seal(filling);
      }
      filling = -1;
    }
    finished = true;
    consumer_cv.notify_all();
  }

  // Commits decoded positions in order while possible. Called with the lock held; drops it while
  // copying pixels, so other threads can decode, commit and copy meanwhile.
  void commit_ready(std::unique_lock<std::mutex>& lock) {
    while (can_commit()) {
      Pending& e = at(commit);
      if (e.error) {
        const std::string file = files[static_cast<std::size_t>(order[static_cast<std::size_t>(commit)])];
        if (policy == BadImagePolicy::Skip && e.bad_image) {
          skipped.push_back(file);
          log.emplace_back(file, reason_of(file, e.message));
          e = Pending{};
          ++commit;
          work_cv.notify_all();  // the window moved on
          continue;
        }
        // Stop: the epoch ends here; the batch being filled is dropped, the ones before it stay.
        error = e.error;
        e = Pending{};
        if (filling >= 0) {
          slots[static_cast<std::size_t>(filling)].count = 0;
          free_slots.push_back(filling);
          filling = -1;
        }
        consumer_cv.notify_all();
        return;
      }
      if (filling < 0) {
        filling = free_slots.back();
        free_slots.pop_back();
      }
      const int slot = filling;
      Slot& s = slots[static_cast<std::size_t>(slot)];
      float* row = s.data + static_cast<std::size_t>(s.count) * row_floats;
      ++s.count;
      ++s.copying;
      std::vector<float> pixels = std::move(e.pixels);
      e = Pending{};
      ++commit;
      if (s.count == batch) {
        filling = -1;
        seal(slot);
      }
      end_epoch_if_done();
      work_cv.notify_all();  // the window moved on: more positions may be claimed
      ++active;
      lock.unlock();
      std::memcpy(row, pixels.data(), sizeof(float) * row_floats);
      pixels = {};
      lock.lock();
      --active;
      --s.copying;
      maybe_publish(slot);
      if (active == 0) idle_cv.notify_all();
    }
    end_epoch_if_done();
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      work_cv.wait(lock, [&] { return stop || can_commit() || can_claim(); });
      if (stop) return;
      if (can_commit()) {
        commit_ready(lock);
        continue;
      }
      const std::int64_t p = claim++;
      const std::string& file = files[static_cast<std::size_t>(order[static_cast<std::size_t>(p)])];
      ++active;
      lock.unlock();
      Pending result;
      try {
        result.pixels = decode_image(file, spec);
      } catch (const Error& e) {
        result.bad_image = true;
        result.message = e.what();
        result.error = std::current_exception();
      } catch (...) {
        result.error = std::current_exception();
      }
      result.ready = true;
      lock.lock();
      --active;
      if (!cancel && !stop) {
        at(p) = std::move(result);
        commit_ready(lock);
      }
      if (active == 0) idle_cv.notify_all();
    }
  }

  void release_held() {
    if (held >= 0) {
      Slot& s = slots[static_cast<std::size_t>(held)];
      s.count = 0;
      s.sealed = false;
      free_slots.push_back(held);
      held = -1;
      work_cv.notify_all();  // a commit may have been waiting for a buffer
    }
  }

  void deliver_log(std::vector<std::pair<std::string, std::string>>& entries) {
    for (const auto& [file, reason] : entries) {
      if (options.on_skip)
        options.on_skip(file, reason);
      else
        std::fprintf(stderr, "skipped %s: %s\n", file.c_str(), reason.c_str());
    }
  }

  void shutdown() {
    {
      const std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    work_cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    for (auto& s : slots)
      if (s.data) {
        if (allocator.free)
          allocator.free(s.data);
        else
          ::operator delete(s.data, std::align_val_t{256});
        s.data = nullptr;
      }
  }
};

ImageStream::ImageStream(std::vector<std::string> files, const ImageSpec& spec, int batch_size, BadImagePolicy policy,
                         const ImageStreamOptions& options, const BatchAllocator& allocator)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  if (files.empty()) throw Error("ImageStream: no image files given");
  if (batch_size < 1) throw Error("ImageStream: batch_size must be at least 1, got " + std::to_string(batch_size));
  if (spec.channels != 1 && spec.channels != 3)
    throw Error("ImageStream: invalid ImageSpec: channels " + std::to_string(spec.channels) + " (must be 1 or 3)");
  if (spec.height < 1 || spec.width < 1 || spec.height > 32768 || spec.width > 32768)
    throw Error("ImageStream: invalid ImageSpec: height x width " + std::to_string(spec.height) + "x" +
                std::to_string(spec.width) + " (each must be 1..32768)");
  if (options.threads < 0 || options.prefetch < 0)
    throw Error("ImageStream: threads (" + std::to_string(options.threads) + ") and prefetch (" +
                std::to_string(options.prefetch) + ") must be >= 0");
  if (static_cast<bool>(allocator.alloc) != static_cast<bool>(allocator.free))
    throw Error("ImageStream: the batch allocator needs both alloc and free, or neither");
  s.files = std::move(files);
  s.spec = spec;
  s.batch = batch_size;
  s.policy = policy;
  s.options = options;
  s.allocator = allocator;
  s.row_floats = static_cast<std::size_t>(spec.features());

  const int threads =
      options.threads > 0 ? options.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) - 1);
  // A few images per thread of slack, so one slow image does not stall the others.
  s.window.resize(static_cast<std::size_t>(4 * threads));
  s.slots.resize(static_cast<std::size_t>(options.prefetch) + 1);
  const std::size_t bytes = s.row_floats * sizeof(float) * static_cast<std::size_t>(batch_size);
  try {
    for (std::size_t i = 0; i < s.slots.size(); ++i) {
      void* p = allocator.alloc ? allocator.alloc(bytes) : ::operator new(bytes, std::align_val_t{256});
      if (!p) throw Error("ImageStream: could not allocate a batch buffer of " + std::to_string(bytes) + " bytes");
      s.slots[i].data = static_cast<float*>(p);
      s.free_slots.push_back(static_cast<int>(s.slots.size() - 1 - i));
    }
    for (int t = 0; t < threads; ++t) {
      try {
        s.workers.emplace_back([&s] { s.run(); });
      } catch (const std::system_error& e) {
        throw Error("image stream: cannot start decoding thread " + std::to_string(t + 1) + " of " + std::to_string(threads) +
                    ": " + e.what() + " (lower [data] threads)");
      }
    }
  } catch (...) {
    s.shutdown();
    throw;
  }
}

ImageStream::~ImageStream() { s_->shutdown(); }

void ImageStream::start_epoch(int epoch) {
  State& s = *s_;
  std::vector<std::pair<std::string, std::string>> log;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    // Let the threads finish what they hold for the old epoch; their results are dropped.
    s.cancel = true;
    s.idle_cv.wait(lock, [&] { return s.active == 0; });
    log.swap(s.log);
    s.free_slots.clear();
    for (std::size_t i = s.slots.size(); i-- > 0;) {
      s.slots[i].count = s.slots[i].copying = 0;
      s.slots[i].sealed = false;
      s.free_slots.push_back(static_cast<int>(i));
    }
    s.sealed.clear();
    s.sealed_head = 0;
    s.filling = s.held = -1;
    for (auto& e : s.window) e = State::Pending{};
    s.order.resize(s.files.size());
    for (std::size_t i = 0; i < s.order.size(); ++i) s.order[i] = static_cast<std::int64_t>(i);
    if (s.options.shuffle) shuffle_order(s.order, s.options.seed, epoch);
    s.claim = s.commit = 0;
    s.error = nullptr;
    s.finished = false;
    s.skipped.clear();
    s.started = true;
    s.cancel = false;
  }
  s.work_cv.notify_all();
  s.deliver_log(log);  // skips of the abandoned epoch not reported yet
}

const float* ImageStream::next(int* count) {
  State& s = *s_;
  std::vector<std::pair<std::string, std::string>> log;
  const float* out = nullptr;
  int n = 0;
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    if (!s.started) throw Error("ImageStream::next: call start_epoch() first");
    s.release_held();
    const auto front_complete = [&] {
      if (s.sealed_head >= s.sealed.size()) return false;
      const State::Slot& f = s.slots[static_cast<std::size_t>(s.sealed[s.sealed_head])];
      return f.copying == 0;
    };
    s.consumer_cv.wait(lock, [&] {
      return front_complete() || (s.sealed_head >= s.sealed.size() && (s.error || s.finished));
    });
    if (front_complete()) {
      s.held = s.sealed[s.sealed_head++];
      if (s.sealed_head == s.sealed.size()) {
        s.sealed.clear();
        s.sealed_head = 0;
      }
      out = s.slots[static_cast<std::size_t>(s.held)].data;
      n = s.slots[static_cast<std::size_t>(s.held)].count;
    } else {
      error = s.error;
    }
    log.swap(s.log);
  }
  if (count) *count = n;
  s.deliver_log(log);
  if (error) std::rethrow_exception(error);
  return out;
}

std::int64_t ImageStream::skipped() const {
  const std::lock_guard<std::mutex> lock(s_->mutex);
  return static_cast<std::int64_t>(s_->skipped.size());
}

std::vector<std::string> ImageStream::skipped_files() const {
  const std::lock_guard<std::mutex> lock(s_->mutex);
  return s_->skipped;
}

std::int64_t ImageStream::batches_per_epoch() const {
  const auto n = static_cast<std::int64_t>(s_->files.size());
  return s_->options.drop_last ? n / s_->batch : (n + s_->batch - 1) / s_->batch;
}

std::int64_t ImageStream::size() const { return static_cast<std::int64_t>(s_->files.size()); }
int ImageStream::batch_size() const { return s_->batch; }
const ImageSpec& ImageStream::spec() const { return s_->spec; }
int ImageStream::threads() const { return static_cast<int>(s_->workers.size()); }

}  // namespace cuae
