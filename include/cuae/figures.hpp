// Figures a person can read, drawn with Cairo and written as PNG: labelled image grids, line plots
// of loss curves, and scatter plots of codes with axes and a legend. Each has a title; images are
// scaled up (nearest neighbour) to a readable size.
#pragma once

#include <string>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// One row of a labelled grid: its label (drawn at the left) and its images [n, H*W*C] (host,
// channels last, values clamped to [0, 1]).
struct CUAE_API GridRow {
  std::string label;
  Tensor images;
};
// Rows of h x w x channels images under a title, each row labelled, each image at least `cell`
// pixels high; `separate_every` > 0 draws a rule after every that many rows (groups of rows).
CUAE_API void write_labelled_grid(const std::string& path, const std::string& title, const std::vector<GridRow>& rows,
                                  int h, int w, int channels, int cell = 56, int separate_every = 0);

// A named series of (x, y) points for write_line_plot.
struct CUAE_API Series {
  std::string name;
  std::vector<double> x, y;
};
// Lines with markers, axes with ticks and labels, and a legend. Non-finite points are skipped.
CUAE_API void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                              const std::string& y_label, const std::vector<Series>& series);

// Points [N, 2] (host) coloured by class (labels [N], class k in colour k mod 10; an empty Tensor:
// one colour), with axes, ticks, axis labels and a legend naming the classes (class_names[k], or
// "class k"). The axes span the points' 0.5th to 99.5th percentiles; points beyond are drawn as
// small triangles on the border, and the caption says how many. Throws cuae::Error for no points,
// points that are not [N, 2], labels of another length, or non-finite points (naming the first).
CUAE_API void write_scatter_plot(const std::string& path, const std::string& title, const std::string& x_label,
                                 const std::string& y_label, const Tensor& points, const Tensor& labels,
                                 const std::vector<std::string>& class_names = {});

}  // namespace cuae
