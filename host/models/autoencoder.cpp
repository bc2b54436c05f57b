// Autoencoder: owns the model's parameter store, the training executor (created on the first
// train()) and the inference executors it builds on demand, all on that one store: evaluation
// during and after training reads the weights the last step wrote, with no copy.
#include "cuae/autoencoder.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "cuae/images.hpp"
#include "cuae/safetensors.hpp"
#include "host/graph/parameter_store.hpp"
#include "kernels/ops.hpp"

namespace cuae {

namespace {
constexpr std::int64_t kInferBatch = 500;
constexpr const char* kFormat = "cuae-checkpoint-1";
using Clock = std::chrono::steady_clock;
// The divergence rule of run_training.
constexpr double kDivergeFactor = 1000.0;
constexpr int kDivergeReports = 3;
// An Objective from the executor's term names and per-term values: the reconstruction term (the
// node "loss") first and named "reconstruction", the regularizers after it in graph order.
Objective make_objective(const std::vector<std::string>& names, const std::vector<double>& values) {
  Objective o;
  for (int pass = 0; pass < 2; ++pass)
    for (std::size_t i = 0; i < names.size() && i < values.size(); ++i)
      if ((names[i] == "loss") == (pass == 0)) {
        o.terms.emplace_back(names[i] == "loss" ? "reconstruction" : names[i], values[i]);
        o.total += values[i];
      }
  return o;
}

// Every float tensor finite: a checkpoint with NaN or Inf weights would evaluate to nan, or be
// trained on and written again.
void check_finite(const std::map<std::string, Tensor>& tensors, const std::string& origin) {
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::F32 || t.device() != Device::CPU) continue;
    const float* p = t.f32();
    std::int64_t bad = 0, first = -1;
    for (std::int64_t i = 0, n = t.numel(); i < n; ++i)
      if (!std::isfinite(p[i]) && bad++ == 0) first = i;
    if (bad)
      throw Error(origin + ": tensor \"" + name + "\" holds " + std::to_string(bad) + " non-finite values (the first at index " +
                  std::to_string(first) + ": " + std::to_string(p[first]) + ")");
  }
}

// A checkpoint's integer metadata, all of it digits.
std::int64_t meta_integer(const std::string& path, const char* key, const std::string& text, std::int64_t max) {
  std::int64_t v = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v < 0 || v > max)
    throw Error(path + ": __metadata__ " + key + " is \"" + text + "\", not an integer in [0, " + std::to_string(max) + "]");
  return v;
}

// Where a training run stands between steps: what resume() needs beyond the parameters,
// optimizer state and step to continue bit-identically.
struct RunState {
  std::int64_t epoch_step = 0;  // steps done in the current epoch (0 at an epoch boundary)
  double epoch_sum = 0.0;       // the epoch's losses so far, and how many
  std::int64_t epoch_count = 0;
  std::vector<double> epoch_terms;  // the epoch's sum of each objective term (Executor::term_names order)
  double best_val = INFINITY;   // early stopping
  int best_epoch = 0, since_best = 0;
  std::int64_t best_step = 0;
  bool stopped_early = false;
  double lowest_report = INFINITY;  // the divergence rule
  int diverging = 0;
  double elapsed_sec = 0.0;         // training time so far, over every resumption
};
static_assert(std::atomic<bool>::is_always_lock_free, "request_stop() must be async-signal-safe");

// RunState as the checkpoint's "run" metadata: JSON, doubles written with full precision (they
// round-trip exactly) and infinities as null.
std::string run_state_json(const RunState& r) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  const nlohmann::json j{{"epoch_step", r.epoch_step},   {"epoch_sum", num(r.epoch_sum)},
                         {"epoch_count", r.epoch_count}, {"best_val", num(r.best_val)},
                         {"best_epoch", r.best_epoch},   {"since_best", r.since_best},
                         {"best_step", r.best_step},     {"stopped_early", r.stopped_early},
                         {"lowest_report", num(r.lowest_report)}, {"diverging", r.diverging},
                         {"epoch_terms", r.epoch_terms},
                         {"elapsed_sec", r.elapsed_sec}};
  return j.dump();
}

RunState parse_run_state(const std::string& text, const std::string& path) {
  RunState r;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    auto num = [&](const char* k) { return j.at(k).is_null() ? INFINITY : j.at(k).get<double>(); };
    r.epoch_step = j.at("epoch_step").get<std::int64_t>();
    r.epoch_sum = num("epoch_sum");
    r.epoch_count = j.at("epoch_count").get<std::int64_t>();
    r.best_val = num("best_val");
    r.best_epoch = j.at("best_epoch").get<int>();
    r.since_best = j.at("since_best").get<int>();
    r.best_step = j.at("best_step").get<std::int64_t>();
    r.stopped_early = j.at("stopped_early").get<bool>();
    r.lowest_report = num("lowest_report");
    r.diverging = j.at("diverging").get<int>();
    r.elapsed_sec = j.at("elapsed_sec").get<double>();
    r.epoch_terms = j.at("epoch_terms").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": __metadata__ run is not a training run's state: " + e.what());
  }
  if (r.epoch_step < 0 || r.epoch_count < 0 || r.since_best < 0 || r.diverging < 0)
    throw Error(path + ": __metadata__ run holds negative counts: " + text);
  return r;
}

}  // namespace

struct Autoencoder::State {
  Config cfg;
  Device device = Device::CPU;
  std::shared_ptr<ParameterStore> store;         // made with the first executor
  std::unique_ptr<Executor> trainer;
  std::unique_ptr<Executor> infer;              // batch kInferBatch (or smaller for tiny inputs)
  std::int64_t infer_batch = 0;
  // A checkpoint's tensors until the trainer takes them: each executor made before it loads the
  // parameters, the trainer also the optimizer state.
  std::map<std::string, Tensor> loaded;
  std::int64_t loaded_step = 0;
  int epochs_done = 0;
  DeepAutoencoderGraph infer_graph;
  int infer_jacobian = -1;                       // encoder layer whose ‖J‖² the inference graph computes
  // Where the current training run stands (saved with every checkpoint, restored by resume()).
  RunState run;
  std::map<std::string, Tensor> best;            // early stopping: the best epoch's tensors
  bool resumed = false;                          // resume(): the next train() continues `run`
  int run_epochs = 0;                            // resume(): the run's total epochs
  std::atomic<bool> stop_requested{false};
  bool interrupted = false;
  // Executors of the other inference graphs (GraphMode::Sampled, GraphMode::Decode), built on
  // demand.
  struct Aux {
    std::unique_ptr<Executor> ex;
    DeepAutoencoderGraph graph;
    std::int64_t batch = 0;
  };
  std::map<int, Aux> aux;

  ExecutorOptions options(bool training) const {
    ExecutorOptions o;
    o.device = device;
    o.training = training;
    o.optimizer = cfg.optimizer;
    o.seed = cfg.train.seed;
    o.tf32 = cfg.train.precision == Precision::TF32;
    o.cuda_graph = cfg.train.cuda_graph;
    return o;
  }

  // An executor on the model's store. The store is laid out by the training graph whatever
  // executor comes first, so the trainer updates it in one launch.
  std::unique_ptr<Executor> make(const Graph& graph, bool training) {
    if (!store) {
      store = std::make_shared<ParameterStore>(device);
      store->impl().attach(build_autoencoder(cfg, cfg.train.batch_size, GraphMode::Train).graph, cfg.train.seed);
    }
    auto ex = std::make_unique<Executor>(graph, options(training), store);
    if (!trainer && !loaded.empty()) ex->load(loaded, loaded_step);
    return ex;
  }

  Aux& auxiliary(GraphMode mode, std::int64_t batch) {
    Aux& a = aux[static_cast<int>(mode)];
    if (!a.ex || a.batch != batch) {
      a.graph = build_autoencoder(cfg, batch, mode);
      a.ex = make(a.graph.graph, false);
      a.batch = batch;
    }
    return a;
  }

  // The trainer's parameters and optimizer state (early stopping's best epoch).
  std::map<std::string, Tensor> snapshot() {
    std::map<std::string, Tensor> t;
    for (auto& [k, v] : trainer->parameters()) t[k] = v;
    for (auto& [k, v] : trainer->optimizer_state()) t[k] = v;
    return t;
  }

  Executor& inference(std::int64_t batch, int jacobian_layer = -1) {
    if (!infer || infer_batch != batch || infer_jacobian != jacobian_layer) {
      infer.reset();
      infer_graph = build_autoencoder(cfg, batch, GraphMode::Infer, jacobian_layer);
      infer_jacobian = jacobian_layer;
      infer = make(infer_graph.graph, false);
      infer_batch = batch;
    }
    return *infer;
  }

  // Runs the inference graph over all rows of `images` (host [N, D]), calling sink(batch_begin,
  // rows_valid) after each batch; the last batch is padded by repeating its final row.
  template <class Sink>
  void run_batches(const Tensor& images, Sink sink, int jacobian_layer = -1) {
    const std::int64_t d = cfg.model.layers.front();
    CUAE_REQUIRE(images.rank() == 2 && images.dim(1) == d && images.dtype() == DType::F32,
               "images " + shape_str(images.shape()) + " do not match the model's input width " + std::to_string(d));
    const Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
    const std::int64_t n = host.dim(0);
    if (n == 0) return;
    Executor& ex = inference(std::min(n, kInferBatch), jacobian_layer);
    Tensor batch({infer_batch, d});
    for (std::int64_t b = 0; b < n; b += infer_batch) {
      const std::int64_t rows = std::min(infer_batch, n - b);
      const float* src = host.f32() + b * d;
      std::copy(src, src + rows * d, batch.f32());
      for (std::int64_t r = rows; r < infer_batch; ++r)
        std::copy(src + (rows - 1) * d, src + rows * d, batch.f32() + r * d);
      ex.set_input("x", batch);
      ex.forward();
      sink(ex, b, rows);
    }
  }
};

namespace {
std::string gib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}
}  // namespace

std::string TrainMemory::describe() const {
  return "about " + gib(total()) + " (training step: arena " + gib(step.arena_bytes) + ", parameters " +
         gib(step.param_bytes) + ", gradients and optimizer state " + gib(step.state_bytes) + "; evaluation " +
         gib(eval_arena_bytes) + "; training images " + gib(data_bytes) + ")";
}

TrainMemory plan_training_memory(const Config& config, Device device, std::int64_t train_images) {
  TrainMemory m;
  ExecutorOptions o;
  o.device = device;
  o.optimizer = config.optimizer;
  o.tf32 = config.train.precision == Precision::TF32;
  o.training = true;
  m.step = Executor::plan(build_autoencoder(config, config.train.batch_size, GraphMode::Train).graph, o);
  o.training = false;
  m.eval_arena_bytes = Executor::plan(build_autoencoder(config, kInferBatch, GraphMode::Infer).graph, o).arena_bytes;
  // A CUDA run keeps the training images (and each epoch's order) on the device.
  if (device == Device::CUDA)
    m.data_bytes = static_cast<std::size_t>(train_images) *
                   (static_cast<std::size_t>(config.model.layers.front()) * sizeof(float) + sizeof(std::int32_t));
  return m;
}

namespace {
// Refuses a run whose plan exceeds what the device can still allocate.
void check_memory(const TrainMemory& m, Device device) {
  const std::size_t available = available_memory(device);
  if (available == 0 || m.total() <= available) return;
  throw Error("the training run needs " + m.describe() + " on " + device_name(device) + ", but only " + gib(available) +
              " are available: lower [train] batch_size or the model's widths" +
              (m.data_bytes > 0 ? ", train on fewer images ([train] max_train) or stream them ([data] stream = true)" : "") +
              (device == Device::CUDA ? ", or train on the CPU (--device cpu)" : ""));
}
}  // namespace

Autoencoder::Autoencoder(const Config& config, Device device) : s_(std::make_unique<State>()) {
  s_->cfg = config;
  s_->device = device;
  CUAE_REQUIRE(config.model.layers.size() >= 2, "model.layers needs at least two widths");
  // Builds (and so validates) the graph now, so a bad config fails here and not mid-way.
  build_autoencoder(config, config.train.batch_size, GraphMode::Train);
}

Autoencoder::Autoencoder(std::unique_ptr<State> s) : s_(std::move(s)) {}
Autoencoder::~Autoencoder() = default;
Autoencoder::Autoencoder(Autoencoder&&) noexcept = default;
Autoencoder& Autoencoder::operator=(Autoencoder&&) noexcept = default;

Autoencoder Autoencoder::load(const std::string& path, Device device) {
  SafetensorsFile f = load_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end()) throw Error(path + ": not a cuae checkpoint (no \"" + key + "\" in __metadata__)");
    return it->second;
  };
  if (meta("format") != kFormat)
    throw Error(path + ": unsupported checkpoint format \"" + meta("format") + "\" (expected " + kFormat + ")");
  auto s = std::make_unique<State>();
  s->cfg = parse_config(meta("config"), path + " [__metadata__.config]");
  s->device = device;
  s->loaded_step = meta_integer(path, "step", meta("step"), std::numeric_limits<std::int64_t>::max());
  s->epochs_done = static_cast<int>(meta_integer(path, "epoch", meta("epoch"), std::numeric_limits<int>::max()));
  check_finite(f.tensors, path);
  if (auto it = f.metadata.find("run"); it != f.metadata.end()) s->run = parse_run_state(it->second, path);
  for (auto it = f.tensors.begin(); it != f.tensors.end();) {
    if (it->first.rfind("best.", 0) == 0) {
      s->best[it->first.substr(5)] = it->second;
      it = f.tensors.erase(it);
    } else {
      ++it;
    }
  }
  s->loaded = std::move(f.tensors);
  Autoencoder ae(std::move(s));
  // Validate every parameter's presence and shape now rather than at first use.
  try {
    ae.s_->inference(1);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return ae;
}

Autoencoder Autoencoder::resume(const std::string& path, Device device, int epochs) {
  Autoencoder ae = load(path, device);
  if (epochs < 0) throw Error("resume: epochs must be >= 0, got " + std::to_string(epochs));
  ae.s_->resumed = true;
  ae.s_->run_epochs = epochs > 0 ? epochs : ae.s_->cfg.train.epochs;
  return ae;
}

const Config& Autoencoder::config() const { return s_->cfg; }
Device Autoencoder::device() const { return s_->device; }
std::int64_t Autoencoder::step() const { return s_->trainer ? s_->trainer->step() : s_->loaded_step; }
int Autoencoder::epochs_done() const { return s_->epochs_done; }

std::int64_t Autoencoder::parameter_count() const {
  const auto g = build_autoencoder(s_->cfg, 1, GraphMode::Infer);
  std::int64_t n = 0;
  for (const auto& v : g.graph.values())
    if (v.kind == Graph::ValueKind::Param) n += shape_numel(v.shape);
  return n;
}

MemoryReport Autoencoder::memory() const {
  if (s_->trainer) return s_->trainer->memory();
  if (s_->infer) return s_->infer->memory();
  return {};
}

// Where a training run's batches come from: begin(epoch) starts an epoch, feed(ex, s) puts step
// s's batch into the executor's input and returns false at the end of the epoch.
struct Autoencoder::BatchSource {
  std::int64_t steps = 0;  // steps per epoch (an upper bound for a stream that may skip images)
  std::function<void(int)> begin;
  std::function<bool(Executor&, std::int64_t)> feed;
  std::function<void(std::int64_t)> skip = [](std::int64_t) {};  // passes over the epoch's first n batches
};

void Autoencoder::ensure_trainer() {
  State& S = *s_;
  if (S.trainer) return;
  const auto g = build_autoencoder(S.cfg, S.cfg.train.batch_size, GraphMode::Train);
  S.trainer = S.make(g.graph, true);
  S.loaded.clear();
}

TrainSplit training_split(const TrainConfig& t, std::int64_t size) {
  TrainSplit s;
  const std::int64_t n = t.max_train > 0 ? std::min(size, t.max_train) : size;
  // The validation split: the last images, never trained on.
  s.validation = t.validation > 0.0 && n > 0
                     ? std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(n) * t.validation))
                     : 0;
  s.train = n - s.validation;
  return s;
}

void Autoencoder::train(const Dataset& data, const std::function<void(const TrainProgress&)>& progress) {
  State& S = *s_;
  const auto& cfg = S.cfg;
  const std::int64_t d = cfg.model.layers.front();
  CUAE_REQUIRE(data.features() == d, "dataset \"" + data.name + "\" has " + std::to_string(data.features()) +
                                       " values per image, the model's input has " + std::to_string(d));
  const TrainSplit split = training_split(cfg.train, data.size());
  if (split.train + split.validation == 0) throw Error("dataset \"" + data.name + "\" holds no images to train on");
  check_pixels(subset(data, 0, split.train + split.validation).images, data.name, cfg.loss.type == LossType::BCEWithLogits);
  const std::int64_t n = split.train, n_val = split.validation;
  const std::int64_t batch = cfg.train.batch_size;
  if (n < batch)
    throw Error("dataset \"" + data.name + "\" has " + std::to_string(n) + " training images" +
                (n_val ? " after holding out " + std::to_string(n_val) + " for validation" : std::string()) +
                ", fewer than one batch of " + std::to_string(batch) + " ([train] batch_size)");
  const Tensor val_images = n_val ? data.images.rows(n, n + n_val) : Tensor();
  if (!S.trainer) check_memory(plan_training_memory(cfg, S.device, n), S.device);
  ensure_trainer();
  // The whole training set lives on the device; each step gathers its shuffled rows there.
  const Tensor images = data.images.rows(0, n);
  const Tensor dev_images = S.device == Device::CPU ? images : images.to(S.device);
  Tensor order({n}, DType::I32);
  Tensor dev_order = S.device == Device::CPU ? order : Tensor({n}, DType::I32, S.device);
  BatchSource src;
  src.steps = n / batch;
  src.begin = [&](int epoch) {
    // A permutation per epoch from (seed, epoch): runs repeat exactly.
    auto* idx = static_cast<std::int32_t*>(order.data());
    std::iota(idx, idx + n, 0);
    std::mt19937_64 rng(cfg.train.seed * 1000003ull + static_cast<std::uint64_t>(epoch));
    std::shuffle(idx, idx + n, rng);
    if (S.device != Device::CPU) dev_order.copy_from(order);
  };
  src.feed = [&](Executor& ex, std::int64_t s) {
    if (s >= src.steps) return false;
    ex.gather_input("x", dev_images, dev_order, s * batch);
    return true;
  };
  run_training(src, val_images, progress);
}

void Autoencoder::train(ImageStream& stream, const Tensor& validation,
                        const std::function<void(const TrainProgress&)>& progress) {
  State& S = *s_;
  const auto& cfg = S.cfg;
  const std::int64_t d = cfg.model.layers.front();
  CUAE_REQUIRE(stream.spec().features() == d, "the image stream gives " + std::to_string(stream.spec().features()) +
                                                " values per image, the model's input has " + std::to_string(d));
  CUAE_REQUIRE(stream.batch_size() == cfg.train.batch_size,
             "the image stream's batch size " + std::to_string(stream.batch_size()) + " differs from [train] batch_size " +
                 std::to_string(cfg.train.batch_size));
  CUAE_REQUIRE(stream.size() >= cfg.train.batch_size, "the image stream has " + std::to_string(stream.size()) +
                                                        " files, fewer than one batch of " + std::to_string(cfg.train.batch_size));
  if (!S.trainer) check_memory(plan_training_memory(cfg, S.device, 0), S.device);  // batches stream through
  ensure_trainer();
  const std::int64_t batch = cfg.train.batch_size;
  BatchSource src;
  src.steps = stream.batches_per_epoch();
  src.begin = [&](int epoch) { stream.start_epoch(epoch); };
  src.skip = [&](std::int64_t n) {
    int count = 0;
    for (std::int64_t i = 0; i < n; ++i) stream.next(&count);
  };
  src.feed = [&](Executor& ex, std::int64_t) {
    // The previous batch's copy must have read its host buffer before the stream reuses it; the
    // device may still be computing on it.
    ex.wait_inputs_read();
    int count = 0;
    const float* rows = stream.next(&count);
    // A last partial batch is left out, as with in-memory data (the graph's batch is fixed).
    if (!rows || count < batch) return false;
    ex.set_input("x", Tensor::view(const_cast<float*>(rows), {batch, d}, DType::F32, Device::CPU));
    return true;
  };
  run_training(src, validation, progress);
}

void Autoencoder::run_training(const BatchSource& src, const Tensor& val_images,
                               const std::function<void(const TrainProgress&)>& progress) {
  State& S = *s_;
  const auto& cfg = S.cfg;
  Executor& ex = *S.trainer;
  RunState& R = S.run;
  const std::int64_t batch = cfg.train.batch_size;
  const bool validate = val_images.rank() == 2 && val_images.dim(0) > 0;
  const std::int64_t steps = src.steps;
  // A fresh run trains config.train.epochs epochs from here; a resumed one (resume()) goes on
  // until its total is reached, starting inside the epoch it stood in.
  const bool resumed = S.resumed;
  S.resumed = false;
  if (!resumed) {
    R = RunState{};
    S.best.clear();
  }
  S.interrupted = false;
  S.stop_requested.store(false);
  const int target = resumed ? S.run_epochs : S.epochs_done + cfg.train.epochs;
  if (R.stopped_early) return;
  const int first_epoch = S.epochs_done;
  const std::int64_t total = steps * (target - first_epoch) - R.epoch_step;
  std::int64_t done = 0;
  const auto t0 = Clock::now();
  const double elapsed_before = R.elapsed_sec;
  auto t_checkpoint = t0;
  const double checkpoint_sec = cfg.train.checkpoint_minutes * 60.0;
  while (S.epochs_done < target && !R.stopped_early) {
    src.begin(S.epochs_done);
    std::int64_t s = R.epoch_step;
    if (s > 0) src.skip(s);
    const auto t_epoch = Clock::now();
    auto t_last = t_epoch;
    std::int64_t steps_last = 0, steps_epoch = 0;
    double last_loss = 0.0;
    // Drains the losses so far and reports; at the epoch's end also validates.
    auto report = [&](bool end, bool interrupted) {
      const auto losses = ex.drain_losses();  // synchronises: the timing below is honest
      double sum = 0.0;
      for (float l : losses) sum += l;
      for (float l : losses)
        if (!std::isfinite(l))
          throw Error("training diverged: loss is " + std::to_string(l) + " at epoch " + std::to_string(S.epochs_done + 1) +
                      ", step " + std::to_string(s) + " (lower [optimizer] lr?)");
      R.epoch_sum += sum;
      R.epoch_count += static_cast<std::int64_t>(losses.size());
      const std::vector<double> term_sums = ex.drain_term_sums();
      R.epoch_terms.resize(term_sums.size(), 0.0);
      for (std::size_t t = 0; t < term_sums.size(); ++t) R.epoch_terms[t] += term_sums[t];
      if (!losses.empty()) {
        last_loss = sum / static_cast<double>(losses.size());
        R.diverging = R.lowest_report > 0.0 && last_loss > kDivergeFactor * R.lowest_report ? R.diverging + 1 : 0;
        R.lowest_report = std::min(R.lowest_report, last_loss);
        if (R.diverging >= kDivergeReports) {
          char msg[256];
          std::snprintf(msg, sizeof msg,
                        "training diverged: the loss has been above %g times its lowest report (%g) for %d reports, now "
                        "%g at epoch %d, step %lld (lower [optimizer] lr?)",
                        kDivergeFactor, R.lowest_report, kDivergeReports, last_loss, S.epochs_done + 1,
                        static_cast<long long>(s));
          throw Error(msg);
        }
      }
      const auto now = Clock::now();
      const double dt = std::chrono::duration<double>(now - t_last).count();
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      TrainProgress p;
      p.epoch = S.epochs_done + 1;
      p.epochs = target;
      p.step = s;
      p.steps_per_epoch = steps;
      p.global_step = ex.step();
      p.loss = last_loss;
      p.epoch_loss = R.epoch_count ? R.epoch_sum / static_cast<double>(R.epoch_count) : 0.0;
      p.images_per_sec = dt > 0 ? static_cast<double>(steps_last * batch) / dt : 0.0;
      const double de = std::chrono::duration<double>(now - t_epoch).count();
      p.epoch_images_per_sec = de > 0 ? static_cast<double>(steps_epoch * batch) / de : 0.0;
      R.elapsed_sec = elapsed_before + elapsed;
      p.elapsed_sec = R.elapsed_sec;
      p.eta_sec = done ? elapsed / static_cast<double>(done) * static_cast<double>(std::max<std::int64_t>(total - done, 0)) : 0.0;
      p.epoch_end = end;
      p.interrupted = interrupted;
      R.epoch_step = s;
      if (end) {
        std::vector<double> means;
        for (double t : R.epoch_terms) means.push_back(t / static_cast<double>(std::max<std::int64_t>(R.epoch_count, 1)));
        p.epoch_objective = make_objective(ex.term_names(), means);
        p.epoch_objective.total = p.epoch_loss;
        ++S.epochs_done;
        R.epoch_step = 0;
        R.epoch_sum = 0.0;
        R.epoch_count = 0;
        R.epoch_terms.clear();
      }
      if (end && validate) {
        p.val_loss = objective(val_images).total;
        if (p.val_loss < R.best_val) {
          R.best_val = p.val_loss;
          R.best_epoch = S.epochs_done;
          R.best_step = ex.step();
          R.since_best = 0;
          p.improved = true;
          if (cfg.train.patience > 0) S.best = S.snapshot();
        } else {
          ++R.since_best;
        }
        p.best_epoch = R.best_epoch;
        R.stopped_early = cfg.train.patience > 0 && R.since_best >= cfg.train.patience;
        p.stopping = R.stopped_early;
      }
      p.checkpoint = end || interrupted ||
                     (cfg.train.checkpoint_every > 0 && ex.step() % cfg.train.checkpoint_every == 0) ||
                     (checkpoint_sec > 0 && std::chrono::duration<double>(now - t_checkpoint).count() >= checkpoint_sec);
      if (p.checkpoint) t_checkpoint = now;
      if (progress) progress(p);
      t_last = now;
      steps_last = 0;
    };
    // A VAE's KL warm-up: the weight rises linearly from 0 to beta over warmup_epochs of steps.
    const double warm_steps = cfg.model.variational ? cfg.vae.warmup_epochs * static_cast<double>(steps) : 0.0;
    while (src.feed(ex, s)) {
      if (warm_steps > 0.0)
        ex.set_term_weight("kl", cfg.vae.beta * static_cast<float>(std::min(1.0, static_cast<double>(ex.step() + 1) / warm_steps)));
      ex.train_step();
      ++s;
      ++done;
      ++steps_last;
      ++steps_epoch;
      if (S.stop_requested.load() && s < steps) {
        S.interrupted = true;
        report(false, true);
        return;
      }
      // A periodic report, except on the last step (the epoch's report covers it).
      const bool checkpoint_step = cfg.train.checkpoint_every > 0 && ex.step() % cfg.train.checkpoint_every == 0;
      if ((s % cfg.train.log_every == 0 || checkpoint_step) && s < steps) report(false, false);
    }
    CUAE_REQUIRE(s > 0, "an epoch produced no full batch (every image skipped?)");
    report(true, S.stop_requested.load());
    if (S.stop_requested.load() && S.epochs_done < target) {
      S.interrupted = true;
      return;
    }
  }
  // Early stopping keeps the best epoch's model, optimizer state included.
  if (cfg.train.patience > 0 && !S.best.empty() && R.best_epoch != S.epochs_done) {
    ex.load(S.best, R.best_step);
    S.epochs_done = R.best_epoch;
  }
}

void Autoencoder::request_stop() { s_->stop_requested.store(true); }
bool Autoencoder::interrupted() const { return s_->interrupted; }

Tensor Autoencoder::encode(const Tensor& images) {
  const std::int64_t k = s_->cfg.model.layers.back();
  Tensor out({images.rank() == 2 ? images.dim(0) : 0, k});
  s_->run_batches(images, [&](Executor& ex, std::int64_t b, std::int64_t rows) {
    const Tensor c = ex.read(s_->infer_graph.code);
    std::copy(c.f32(), c.f32() + rows * k, out.f32() + b * k);
  });
  return out;
}

Tensor Autoencoder::activations(const Tensor& images, const std::string& layer) {
  const int li = encoder_layer_index(s_->cfg.model, layer, "activations()");
  const std::int64_t k = s_->cfg.model.layers[static_cast<std::size_t>(li) + 1];
  Tensor out({images.rank() == 2 ? images.dim(0) : 0, k});
  s_->run_batches(images, [&](Executor& ex, std::int64_t b, std::int64_t rows) {
    const Tensor c = ex.read(s_->infer_graph.layers[static_cast<std::size_t>(li)]);
    std::copy(c.f32(), c.f32() + rows * k, out.f32() + b * k);
  });
  return out;
}

double Autoencoder::jacobian_norm(const Tensor& images, const std::string& layer) {
  const int li = encoder_layer_index(s_->cfg.model, layer, "jacobian_norm()");
  double sum = 0.0;
  std::int64_t batches = 0;
  const std::int64_t n = images.rank() == 2 ? images.dim(0) : 0;
  // Each batch's value is its mean over rows; only whole batches count (padding rows repeat one).
  s_->run_batches(
      images,
      [&](Executor& ex, std::int64_t, std::int64_t rows) {
        if (rows == s_->infer_batch || n < s_->infer_batch) {
          sum += static_cast<double>(ex.read(s_->infer_graph.jacobian).f32()[0]);
          ++batches;
        }
      },
      li);
  return batches ? sum / static_cast<double>(batches) : 0.0;
}

Tensor corrupt_images(const Tensor& images, NoiseType type, float level, std::uint64_t seed) {
  const Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  CUAE_REQUIRE(host.dtype() == DType::F32, "corrupt_images: images must be F32, got " + std::string(dtype_name(host.dtype())));
  Tensor out(host.shape());
  if (host.numel() == 0) return out;
  kern::Corrupt a;
  a.x = host.f32();
  a.y = out.f32();
  a.count = host.numel();
  a.kind = static_cast<kern::NoiseKind>(static_cast<int>(type));
  a.level = level;
  a.seed = seed;
  a.step = 0;
  kern::cpu_ops().corrupt(kern::Context{}, a);
  return out;
}

Tensor Autoencoder::reconstruct(const Tensor& images) {
  const std::int64_t d = s_->cfg.model.layers.front();
  Tensor out({images.rank() == 2 ? images.dim(0) : 0, d});
  s_->run_batches(images, [&](Executor& ex, std::int64_t b, std::int64_t rows) {
    const Tensor r = ex.read(s_->infer_graph.recon);
    std::copy(r.f32(), r.f32() + rows * d, out.f32() + b * d);
  });
  return out;
}

ReconMetrics Autoencoder::evaluate(const Tensor& images) {
  const Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  return reconstruction_metrics(host, reconstruct(host));
}

double Autoencoder::loss(const Tensor& images) {
  double sum = 0.0;
  std::int64_t batches = 0;
  const std::int64_t n = images.rank() == 2 ? images.dim(0) : 0;
  // Only whole batches count, so padding rows never bias the mean.
  s_->run_batches(images, [&](Executor& ex, std::int64_t, std::int64_t rows) {
    if (rows == s_->infer_batch || n < s_->infer_batch) {
      sum += ex.last_loss();
      ++batches;
    }
  });
  return batches ? sum / static_cast<double>(batches) : 0.0;
}

Objective Autoencoder::objective(const Tensor& images) {
  State& S = *s_;
  const std::int64_t n = images.rank() == 2 ? images.dim(0) : 0, d = S.cfg.model.layers.front();
  CUAE_REQUIRE(n > 0 && images.dim(1) == d, "objective: images must be [N, " + std::to_string(d) + "] with N >= 1, got " +
                                               shape_str(images.shape()));
  ensure_trainer();
  Executor& ex = *S.trainer;
  const std::int64_t batch = S.cfg.train.batch_size;
  const Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  const std::vector<std::string> names = ex.term_names();
  std::vector<double> sums(names.size(), 0.0);
  const std::int64_t batches = std::max<std::int64_t>(n / batch, 1);
  Tensor padded;  // fewer images than a batch: repeated to fill one
  if (n < batch) {
    padded = Tensor({batch, d});
    for (std::int64_t r = 0; r < batch; ++r)
      std::copy(host.f32() + (r % n) * d, host.f32() + (r % n + 1) * d, padded.f32() + r * d);
  }
  for (std::int64_t b = 0; b < batches; ++b) {
    ex.set_input("x", n < batch ? padded : host.rows(b * batch, (b + 1) * batch));
    // Random draws keyed far from any training step's, one key per batch.
    const std::vector<float> t = ex.evaluate_terms((std::uint64_t{1} << 62) + static_cast<std::uint64_t>(b));
    for (std::size_t i = 0; i < t.size(); ++i) sums[i] += t[i];
  }
  for (double& v : sums) v /= static_cast<double>(batches);
  return make_objective(names, sums);
}

std::vector<std::pair<std::string, Tensor>> Autoencoder::parameters() {
  State& S = *s_;
  if (S.trainer) return S.trainer->parameters();
  return S.inference(1).parameters();
}

void Autoencoder::load_parameters(const std::map<std::string, Tensor>& tensors) {
  State& S = *s_;
  check_finite(tensors, "load_parameters");
  if (S.trainer) {
    S.trainer->load(tensors, S.trainer->step());
  } else {
    S.loaded = tensors;
    S.loaded_step = 0;
    // Into the store now (every executor shares it), every parameter present with its shape.
    S.inference(1).load(tensors);
  }
}

Tensor Autoencoder::decode(const Tensor& codes) {
  State& S = *s_;
  const std::int64_t k = S.cfg.model.layers.back(), d = S.cfg.model.layers.front();
  CUAE_REQUIRE(codes.rank() == 2 && codes.dim(1) == k && codes.dtype() == DType::F32,
             "decode: codes " + shape_str(codes.shape()) + " must be [N, " + std::to_string(k) + "] F32");
  const Tensor host = codes.device() == Device::CPU ? codes : codes.to(Device::CPU);
  const std::int64_t n = host.dim(0);
  Tensor out({n, d});
  if (n == 0) return out;
  State::Aux& a = S.auxiliary(GraphMode::Decode, std::min(n, kInferBatch));
  Tensor batch({a.batch, k});
  for (std::int64_t b = 0; b < n; b += a.batch) {
    const std::int64_t rows = std::min(a.batch, n - b);
    const float* src = host.f32() + b * k;
    std::copy(src, src + rows * k, batch.f32());
    for (std::int64_t r = rows; r < a.batch; ++r) std::copy(src + (rows - 1) * k, src + rows * k, batch.f32() + r * k);
    a.ex->set_input("z", batch);
    a.ex->forward();
    const Tensor rec = a.ex->read(a.graph.recon);
    std::copy(rec.f32(), rec.f32() + rows * d, out.f32() + b * d);
  }
  return out;
}

Tensor Autoencoder::sample(std::int64_t n, std::uint64_t seed) {
  CUAE_REQUIRE(s_->cfg.model.variational, "sample: the model is not variational ([model] variational = true)");
  const std::int64_t k = s_->cfg.model.layers.back();
  Tensor z({n, k});
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t i = 0; i < n * k; ++i) z.f32()[i] = normal(rng);
  return decode(z);
}

VaeBounds Autoencoder::vae_bounds(const Tensor& images, int samples) {
  State& S = *s_;
  const Config& cfg = S.cfg;
  CUAE_REQUIRE(cfg.model.variational, "vae_bounds: the model is not variational ([model] variational = true)");
  CUAE_REQUIRE(samples >= 1, "vae_bounds: samples must be >= 1");
  const std::int64_t D = cfg.model.layers.front(), k = cfg.model.layers.back();
  CUAE_REQUIRE(images.rank() == 2 && images.dim(1) == D && images.dtype() == DType::F32,
             "images " + shape_str(images.shape()) + " do not match the model's input width " + std::to_string(D));
  const Tensor host = images.device() == Device::CPU ? images : images.to(Device::CPU);
  const std::int64_t n = host.dim(0);
  VaeBounds r;
  r.samples = samples;
  r.images = n;
  if (n == 0) return r;
  State::Aux& a = S.auxiliary(GraphMode::Sampled, std::min(n, kInferBatch));
  const bool bern = cfg.vae.likelihood == Likelihood::Bernoulli;
  const double sigma = cfg.vae.sigma;
  const double log2pi = std::log(2.0 * M_PI);
  const double gauss_const = 0.5 * static_cast<double>(D) * std::log(2.0 * M_PI * sigma * sigma);
  Tensor batch({a.batch, D});
  std::vector<double> logw(static_cast<std::size_t>(a.batch) * samples);
  std::vector<double> nll_sum(static_cast<std::size_t>(a.batch));
  for (std::int64_t b = 0; b < n; b += a.batch) {
    const std::int64_t rows = std::min(a.batch, n - b);
    const float* src = host.f32() + b * D;
    std::copy(src, src + rows * D, batch.f32());
    for (std::int64_t i = rows; i < a.batch; ++i) std::copy(src + (rows - 1) * D, src + rows * D, batch.f32() + i * D);
    a.ex->set_input("x", batch);
    std::fill(nll_sum.begin(), nll_sum.end(), 0.0);
    std::vector<double> kl(static_cast<std::size_t>(rows), 0.0);
    for (int s = 0; s < samples; ++s) {
      // Each sample draws its own ε: the step numbers only have to differ.
      a.ex->forward_at(static_cast<std::uint64_t>(s) + 1);
      const Tensor stats = a.ex->read(a.graph.stats), z = a.ex->read(a.graph.code), out = a.ex->read(a.graph.output);
      for (std::int64_t i = 0; i < rows; ++i) {
        const float* mu = stats.f32() + i * 2 * k;
        const float* lv = mu + k;
        const float* zi = z.f32() + i * k;
        double log_pz = 0.0, log_q = 0.0, kli = 0.0;
        for (std::int64_t j = 0; j < k; ++j) {
          const double zz = zi[j], m = mu[j], v = lv[j];
          log_pz += -0.5 * (zz * zz + log2pi);
          log_q += -0.5 * ((zz - m) * (zz - m) * std::exp(-v) + v + log2pi);
          kli += -0.5 * (1.0 + v - m * m - std::exp(v));
        }
        const float* xi = batch.f32() + i * D;
        const float* oi = out.f32() + i * D;
        double nll = 0.0;
        if (bern) {
          for (std::int64_t p = 0; p < D; ++p) {
            const double l = oi[p], x = xi[p];
            nll += std::max(l, 0.0) - l * x + std::log1p(std::exp(-std::abs(l)));
          }
        } else {
          for (std::int64_t p = 0; p < D; ++p) nll += (xi[p] - oi[p]) * (static_cast<double>(xi[p]) - oi[p]);
          nll = nll / (2.0 * sigma * sigma) + gauss_const;
        }
        nll_sum[static_cast<std::size_t>(i)] += nll;
        if (s == 0) kl[static_cast<std::size_t>(i)] = kli;
        logw[static_cast<std::size_t>(i) * samples + s] = -nll + log_pz - log_q;
      }
    }
    for (std::int64_t i = 0; i < rows; ++i) {
      const double* w = logw.data() + i * samples;
      const double mx = *std::max_element(w, w + samples);
      double sum = 0.0;
      for (int s = 0; s < samples; ++s) sum += std::exp(w[s] - mx);
      const double nll = nll_sum[static_cast<std::size_t>(i)] / samples;
      r.image_iw_bound.push_back(mx + std::log(sum / samples));
      r.image_elbo.push_back(-nll - kl[static_cast<std::size_t>(i)]);
      r.iw_bound += r.image_iw_bound.back();
      r.elbo += r.image_elbo.back();
      r.recon_nll += nll;
      r.kl += kl[static_cast<std::size_t>(i)];
    }
  }
  r.iw_bound /= static_cast<double>(n);
  r.elbo /= static_cast<double>(n);
  r.recon_nll /= static_cast<double>(n);
  r.kl /= static_cast<double>(n);
  return r;
}

void Autoencoder::save(const std::string& path) {
  State& S = *s_;
  std::vector<std::pair<std::string, Tensor>> tensors;
  if (S.trainer) {
    tensors = S.trainer->parameters();
    for (auto& t : S.trainer->optimizer_state()) tensors.push_back(std::move(t));
  } else if (!S.loaded.empty()) {
    for (auto& [k, v] : S.loaded) tensors.emplace_back(k, v);
  } else {
    tensors = S.inference(1).parameters();
  }
  std::map<std::string, std::string> meta{{"format", kFormat},
                                          {"config", to_toml(S.cfg)},
                                          {"step", std::to_string(step())},
                                          {"epoch", std::to_string(S.epochs_done)},
                                          {"model", config_name(S.cfg.model.type)}};
  if (S.trainer) {
    meta["run"] = run_state_json(S.run);
    for (const auto& [k, v] : S.best) tensors.emplace_back("best." + k, v);
  }
  save_safetensors(path, tensors, meta);
}

}  // namespace cuae
