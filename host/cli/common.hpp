// What the program's commands share: their options' conventions, loading a config's data, and
// printing and drawing reconstructions. The commands themselves live one family per file
// (training.cpp, inspection.cpp, generation.cpp, use.cpp); main.cpp assembles them.
#pragma once

#include <CLI/CLI.hpp>
#include <cuae/cuae.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace cuae::cli {

// Each family adds its commands to the program; a command's callback runs it and throws
// cuae::Error (one line, naming what is at fault) when it cannot.
void add_training_commands(CLI::App& app);    // train, pretrain
void add_inspection_commands(CLI::App& app);  // eval, summary, version
void add_generation_commands(CLI::App& app);  // sample, interpolate, scatter
void add_use_commands(CLI::App& app);         // denoise, encode

// A number in [lo, hi]: unlike CLI::Range, NaN is refused too.
CLI::Validator finite_in(double lo, double hi);

// The program's exit status once the command returns (0 unless the command sets it, e.g. an
// interrupted training run).
int& exit_code();

// --device auto|cpu|cuda into `device`.
CLI::Option* add_device_option(CLI::App* cmd, std::string& device);

// The test set, and the training set unless it is streamed or not wanted (size() == 0 then).
// An empty test set is an error naming where it came from (nothing can be evaluated on it).
struct Data {
  Dataset train, test;
};
Data load_data(const Config& c, bool with_train = true);
ImageSpec image_spec(const Config& c);

// "  autoencoder   MSE/pixel ...   squared error/image ...   BCE/image ..."
void print_metrics(const char* who, const ReconMetrics& m);
// "m:ss"
std::string fmt_time(double sec);
// "784-1000-500-250-30"
std::string layer_string(const ModelConfig& m);
// The images [N, D] of a dataset's geometry as a grid of `per_row` per row.
void write_images(const std::string& path, const Tensor& images, const Dataset& like, int per_row);
// Test images (top row of each pair) above their reconstructions, up to 4 pairs of rows.
void write_reconstruction_grid(const std::string& path, const Dataset& test, const Tensor& recon);

}  // namespace cuae::cli
