// Exact resumption: a training run stopped by request_stop() at any step (mid-epoch or at an
// epoch's end), saved, and continued with Autoencoder::resume() must reproduce the uninterrupted
// run bit for bit: every reported loss and every parameter and optimizer moment. The model uses
// everything that draws random numbers or keeps state across steps: input noise, dropout, a
// validation split with early-stopping bookkeeping, Adam.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <vector>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/safetensors.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

Config resume_config() {
  return parse_config(R"(
[model]
layers = [64, 48, 12]
activation = "relu"
output_activation = "sigmoid"
dropout = 0.2
[noise]
type = "mask"
level = 0.25
[loss]
type = "bce"
[optimizer]
type = "adam"
lr = 3e-3
[train]
batch_size = 16
epochs = 3
seed = 5
device = "cpu"
log_every = 1
validation = 0.125
patience = 10
)",
                      "resume");
}

Dataset pixels(std::int64_t n, std::int64_t d) {
  Dataset ds;
  ds.images = Tensor({n, d});
  std::mt19937 gen(11);
  test::fill_uniform({ds.images.f32(), static_cast<std::size_t>(n * d)}, gen, 0.0f, 1.0f);
  ds.rows = 8;
  ds.cols = 8;
  ds.name = "pixels";
  return ds;
}

struct RunRecord {
  std::vector<double> losses;   // every report's loss (one per step: log_every = 1)
  std::vector<double> epoch_losses;
  std::map<std::string, std::vector<float>> tensors;  // parameters and optimizer state
};

void take_tensors(const std::string& path, RunRecord& r) {
  const SafetensorsFile f = load_safetensors(path);
  for (const auto& [k, t] : f.tensors) r.tensors[k].assign(t.f32(), t.f32() + t.numel());
}

void record(RunRecord& r, const TrainProgress& p) {
  r.losses.push_back(p.loss);
  if (p.epoch_end) r.epoch_losses.push_back(p.epoch_loss);
}

// Stops after `stop_at` optimizer steps, saves, resumes from the file and finishes.
RunRecord interrupted_run(const Dataset& data, std::int64_t stop_at, const fs::path& dir) {
  RunRecord r;
  const std::string path = (dir / ("stop" + std::to_string(stop_at) + ".safetensors")).string();
  {
    Autoencoder ae(resume_config(), Device::CPU);
    ae.train(data, [&](const TrainProgress& p) {
      record(r, p);
      if (p.global_step == stop_at) ae.request_stop();
      if (p.checkpoint) ae.save(path);  // the last one written is where the run stopped
    });
    EXPECT_TRUE(ae.interrupted()) << "the run ended before step " << stop_at;
  }
  Autoencoder ae = Autoencoder::resume(path, Device::CPU);
  ae.train(data, [&](const TrainProgress& p) { record(r, p); });
  EXPECT_FALSE(ae.interrupted());
  ae.save((dir / "resumed.safetensors").string());
  take_tensors((dir / "resumed.safetensors").string(), r);
  return r;
}

TEST(Resume, ContinuesBitIdenticallyFromAnyStep) {
  const Dataset data = pixels(16 * 8, 64);  // 7 training batches per epoch after the validation split
  const fs::path dir = fs::temp_directory_path() / ("cuae_resume_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  RunRecord full;
  {
    Autoencoder ae(resume_config(), Device::CPU);
    ae.train(data, [&](const TrainProgress& p) { record(full, p); });
    ae.save((dir / "full.safetensors").string());
    take_tensors((dir / "full.safetensors").string(), full);
  }
  ASSERT_EQ(full.losses.size(), 21u);
  // Mid-epoch (step 3 of epoch 1, step 4 of epoch 2) and at an epoch's end (step 7).
  for (std::int64_t stop_at : {3, 7, 11}) {
    SCOPED_TRACE("stopped after step " + std::to_string(stop_at));
    const RunRecord r = interrupted_run(data, stop_at, dir);
    EXPECT_EQ(r.losses, full.losses);
    EXPECT_EQ(r.epoch_losses, full.epoch_losses);
    ASSERT_EQ(r.tensors.size(), full.tensors.size());
    for (const auto& [k, v] : full.tensors) {
      ASSERT_TRUE(r.tensors.count(k)) << k;
      EXPECT_EQ(r.tensors.at(k), v) << k << " differs";
    }
  }
  fs::remove_all(dir);
}

TEST(Resume, AFinishedRunHasNothingLeftToTrain) {
  const Dataset data = pixels(16 * 8, 64);
  const fs::path path = fs::temp_directory_path() / ("cuae_resume_done_" + std::to_string(::getpid()) + ".safetensors");
  std::int64_t steps = 0;
  {
    Autoencoder ae(resume_config(), Device::CPU);
    ae.train(data);
    steps = ae.step();
    ae.save(path.string());
  }
  Autoencoder ae = Autoencoder::resume(path.string(), Device::CPU);
  int reports = 0;
  ae.train(data, [&](const TrainProgress&) { ++reports; });
  EXPECT_EQ(reports, 0);
  EXPECT_EQ(ae.step(), steps);
  // A larger total trains on: one more epoch of 7 steps.
  Autoencoder more = Autoencoder::resume(path.string(), Device::CPU, 4);
  more.train(data);
  EXPECT_EQ(more.step(), steps + 7);
  fs::remove(path);
}

TEST(Resume, RefusesAMalformedRunState) {
  const Dataset data = pixels(16 * 8, 64);
  const fs::path path = fs::temp_directory_path() / ("cuae_resume_bad_" + std::to_string(::getpid()) + ".safetensors");
  Autoencoder ae(resume_config(), Device::CPU);
  ae.train(data);
  ae.save(path.string());
  SafetensorsFile f = load_safetensors(path.string());
  f.metadata["run"] = R"({"epoch_step": -4})";
  std::vector<std::pair<std::string, Tensor>> t(f.tensors.begin(), f.tensors.end());
  save_safetensors(path.string(), t, f.metadata);
  try {
    (void)Autoencoder::resume(path.string(), Device::CPU);
    FAIL() << "a malformed run state was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run"), std::string::npos) << e.what();
  }
  fs::remove(path);
}

}  // namespace
}  // namespace cuae
