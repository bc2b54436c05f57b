// What the program's commands share: their options' conventions, loading a config's data, and
// printing and drawing reconstructions. The commands themselves live one family per file
// (training.cpp, inspection.cpp, generation.cpp, use.cpp); main.cpp assembles them.
#pragma once

#include <CLI/CLI.hpp>
#include <cuae/cuae.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cuae::cli {

// Each family adds its commands to the program; a command's callback runs it and throws
// cuae::Error (one line, naming what is at fault) when it cannot.
void add_training_commands(CLI::App& app);    // train, pretrain
void add_inspection_commands(CLI::App& app);  // eval, summary, version
void add_generation_commands(CLI::App& app);  // sample, interpolate, scatter
void add_use_commands(CLI::App& app);         // denoise, encode
void add_anomaly_command(CLI::App& app);      // anomaly
void add_probe_command(CLI::App& app);        // probe
void add_inpaint_command(CLI::App& app);      // inpaint
void add_compress_commands(CLI::App& app);    // compress, decompress

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
// What a config trains, for start-up lines: the family and widths, then every regularizer that is
// on, e.g. "variational deep autoencoder 784-512-20 (beta 1, KL warm-up 10 epochs)" or
// "deep autoencoder 784-400 (KL sparsity on code: rho 0.05, weight 3; dropout 0.1)".
std::string model_description(const Config& c);
// "1 epoch", "3 epochs"
std::string count(long long n, const char* one, const char* many);
// The class names of a config's dataset (Fashion-MNIST's and CIFAR-10's, an image folder's
// sub-folders); empty when unknown.
std::vector<std::string> class_names(const Config& c);
// `count` image indices of a set spread over its classes (round robin in label order), or evenly
// over the set when it has no labels: a picture then shows every class, not the first files.
std::vector<std::int64_t> spread_indices(const Dataset& d, std::int64_t count);
// images[idx[i]] as rows [idx.size(), D].
Tensor gather_rows(const Tensor& images, const std::vector<std::int64_t>& idx);
// Labelled rows of `per_row` images under a title (write_labelled_grid), one block of rows per
// (label, images [n, D]) pair, the blocks interleaved chunk by chunk: with {"test images", x} and
// {"reconstructions", x_hat}, each row of test images sits above its reconstructions.
void write_row_blocks(const std::string& path, const std::string& title, const Dataset& like,
                      const std::vector<std::pair<std::string, Tensor>>& blocks, int per_row);

}  // namespace cuae::cli
