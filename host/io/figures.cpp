// Figures with Cairo (Debian: libcairo2-dev; text in DejaVu Sans through fontconfig), written to
// PNG atomically. Layout constants are in pixels.
#include "cuae/figures.hpp"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>

#include "host/io/atomic_file.hpp"

namespace cuae {

namespace {

constexpr double kPalette[10][3] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50},
                                    {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};

// A white canvas with a context, written as PNG by save().
class Canvas {
 public:
  Canvas(int width, int height)
      : surface_(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height)), cr_(cairo_create(surface_.get())) {
    if (cairo_status(cr_.get()) != CAIRO_STATUS_SUCCESS)
      throw Error("figure: cannot make a " + std::to_string(width) + "x" + std::to_string(height) + " canvas");
    cairo_set_source_rgb(cr_.get(), 1, 1, 1);
    cairo_paint(cr_.get());
    cairo_select_font_face(cr_.get(), "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  }
  cairo_t* cr() const { return cr_.get(); }
  cairo_surface_t* surface() const { return surface_.get(); }

  // Text at (x, y) (the baseline); align 0 left, 0.5 centre, 1 right.
  void text(double x, double y, const std::string& s, double size, double align = 0.0, bool bold = false) {
    cairo_t* c = cr();
    cairo_select_font_face(c, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c, size);
    cairo_text_extents_t e;
    cairo_text_extents(c, s.c_str(), &e);
    cairo_set_source_rgb(c, 0.1, 0.1, 0.1);
    cairo_move_to(c, x - align * e.x_advance, y);
    cairo_show_text(c, s.c_str());
  }
  double text_width(const std::string& s, double size) {
    cairo_set_font_size(cr(), size);
    cairo_text_extents_t e;
    cairo_text_extents(cr(), s.c_str(), &e);
    return e.x_advance;
  }

  void save(const std::string& path) {
    cairo_surface_flush(surface());
    // No exception may cross Cairo's C frames: the writer's error is kept and rethrown here.
    struct Sink {
      io::AtomicFile file;
      std::string error;
    } sink{io::AtomicFile(path), {}};
    const cairo_status_t st = cairo_surface_write_to_png_stream(
        surface(),
        [](void* closure, const unsigned char* data, unsigned int length) {
          auto* s = static_cast<Sink*>(closure);
          try {
            s->file.write(data, length);
            return CAIRO_STATUS_SUCCESS;
          } catch (const std::exception& e) {
            s->error = e.what();
            return CAIRO_STATUS_WRITE_ERROR;
          }
        },
        &sink);
    if (!sink.error.empty()) throw Error(sink.error);
    if (st != CAIRO_STATUS_SUCCESS) throw Error("cannot write " + path + ": " + cairo_status_to_string(st));
    sink.file.commit();
  }

 private:
  std::unique_ptr<cairo_surface_t, SurfaceDeleter> surface_;
  std::unique_ptr<cairo_t, ContextDeleter> cr_;
};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// About n "nice" tick values (1, 2, 5 x 10^k steps, at least min_step) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, double min_step = 0.0, int n = 6) {
  const double span = hi - lo;
  if (!(span > 0)) return {lo};
  const double raw = std::max(span / n, min_step), mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

// A plot area with axes: maps data to pixels and draws the frame, ticks and labels.
struct Axes {
  double x0, y0, x1, y1;  // the plot area in pixels (y0 top)
  double lo[2], hi[2];    // the data range
  bool integer_x = false; // x ticks on whole numbers only (epochs)
  double px(double x) const { return x0 + (x - lo[0]) / (hi[0] - lo[0]) * (x1 - x0); }
  double py(double y) const { return y1 - (y - lo[1]) / (hi[1] - lo[1]) * (y1 - y0); }
  void draw(Canvas& cv, const std::string& x_label, const std::string& y_label) const {
    cairo_t* c = cv.cr();
    cairo_set_source_rgb(c, 0.2, 0.2, 0.2);
    cairo_set_line_width(c, 1.0);
    cairo_rectangle(c, x0, y0, x1 - x0, y1 - y0);
    cairo_stroke(c);
    for (double t : ticks(lo[0], hi[0], integer_x ? 1.0 : 0.0)) {
      cairo_move_to(c, px(t), y1);
      cairo_line_to(c, px(t), y1 + 5);
      cairo_stroke(c);
      cv.text(px(t), y1 + 19, number(t), 12, 0.5);
    }
    for (double t : ticks(lo[1], hi[1])) {
      cairo_move_to(c, x0 - 5, py(t));
      cairo_line_to(c, x0, py(t));
      cairo_stroke(c);
      cv.text(x0 - 8, py(t) + 4, number(t), 12, 1.0);
    }
    cv.text((x0 + x1) / 2, y1 + 40, x_label, 13, 0.5);
    cairo_save(c);
    cairo_translate(c, x0 - 62, (y0 + y1) / 2);
    cairo_rotate(c, -M_PI / 2);
    cv.text(0, 0, y_label, 13, 0.5);
    cairo_restore(c);
  }
};

void legend(Canvas& cv, double x, double y, const std::vector<std::pair<std::string, int>>& entries) {
  cairo_t* c = cv.cr();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double* col = kPalette[entries[i].second % 10];
    cairo_set_source_rgb(c, col[0], col[1], col[2]);
    cairo_arc(c, x + 6, y + 20.0 * static_cast<double>(i) - 4, 5, 0, 2 * M_PI);
    cairo_fill(c);
    cv.text(x + 16, y + 20.0 * static_cast<double>(i), entries[i].first, 12);
  }
}

}  // namespace

void write_labelled_grid(const std::string& path, const std::string& title, const std::vector<GridRow>& rows, int h,
                         int w, int channels, int cell, int separate_every) {
  if (rows.empty()) throw Error("write_labelled_grid(" + path + "): no rows");
  if (h < 1 || w < 1 || (channels != 1 && channels != 3))
    throw Error("write_labelled_grid(" + path + "): images must be h x w x 1 or 3, got " + std::to_string(h) + "x" +
                std::to_string(w) + "x" + std::to_string(channels));
  std::size_t cols = 0;
  for (const auto& r : rows) {
    if (r.images.rank() != 2 || r.images.dim(1) != static_cast<std::int64_t>(h) * w * channels)
      throw Error("write_labelled_grid(" + path + "): row \"" + r.label + "\" images " + shape_str(r.images.shape()) +
                  " are not [n, " + std::to_string(h * w * channels) + "]");
    cols = std::max(cols, static_cast<std::size_t>(r.images.dim(0)));
  }
  const int scale = std::max(1, (cell + h - 1) / h), ch = h * scale, cw = w * scale, gap = 4;
  Canvas probe(1, 1);
  double label_w = 0;
  for (const auto& r : rows) label_w = std::max(label_w, probe.text_width(r.label, 13));
  const int left = static_cast<int>(label_w) + 20, top = 40;
  const int width = left + static_cast<int>(cols) * (cw + gap) + 10;
  const int height = top + static_cast<int>(rows.size()) * (ch + gap) + 10;
  Canvas cv(std::max(width, static_cast<int>(probe.text_width(title, 15)) + 20), height);
  cv.text(10, 24, title, 15, 0.0, true);
  cairo_t* c = cv.cr();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const double y = top + static_cast<double>(r) * (ch + gap);
    cv.text(left - 10, y + ch / 2.0 + 5, rows[r].label, 13, 1.0);
    const Tensor img = rows[r].images.device() == Device::CPU ? rows[r].images : rows[r].images.to(Device::CPU);
    for (std::int64_t i = 0; i < img.dim(0); ++i) {
      const float* p = img.f32() + i * h * w * channels;
      const double x = left + static_cast<double>(i) * (cw + gap);
      for (int yy = 0; yy < h; ++yy)
        for (int xx = 0; xx < w; ++xx) {
          double rgb[3];
          for (int k = 0; k < 3; ++k) {
            const float v = p[(yy * w + xx) * channels + (channels == 3 ? k : 0)];
            rgb[k] = std::isfinite(v) ? std::clamp(static_cast<double>(v), 0.0, 1.0) : 0.0;
          }
          cairo_set_source_rgb(c, rgb[0], rgb[1], rgb[2]);
          cairo_rectangle(c, x + xx * scale, y + yy * scale, scale, scale);
          cairo_fill(c);
        }
    }
    if (separate_every > 0 && (r + 1) % static_cast<std::size_t>(separate_every) == 0 && r + 1 < rows.size()) {
      cairo_set_source_rgb(c, 0.6, 0.6, 0.6);
      cairo_set_line_width(c, 1.0);
      cairo_move_to(c, 10, y + ch + gap / 2.0);
      cairo_line_to(c, width - 10, y + ch + gap / 2.0);
      cairo_stroke(c);
    }
  }
  cv.save(path);
}

void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series) {
  Axes ax{90, 50, 560, 380, {INFINITY, INFINITY}, {-INFINITY, -INFINITY}};
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        ax.lo[0] = std::min(ax.lo[0], s.x[i]), ax.hi[0] = std::max(ax.hi[0], s.x[i]);
        ax.lo[1] = std::min(ax.lo[1], s.y[i]), ax.hi[1] = std::max(ax.hi[1], s.y[i]);
      }
  if (!std::isfinite(ax.lo[0])) throw Error("write_line_plot(" + path + "): no finite points");
  ax.integer_x = true;
  for (const auto& s : series)
    for (double x : s.x) ax.integer_x = ax.integer_x && (!std::isfinite(x) || x == std::floor(x));
  for (int k = 0; k < 2; ++k) {
    const double pad = (ax.hi[k] - ax.lo[k]) * 0.05;
    if (!(pad > 0)) ax.lo[k] -= 0.5, ax.hi[k] += 0.5;
    else if (k == 1) ax.lo[k] -= pad, ax.hi[k] += pad;
  }
  Canvas cv(760, 440);
  cv.text(10, 24, title, 15, 0.0, true);
  ax.draw(cv, x_label, y_label);
  cairo_t* c = cv.cr();
  std::vector<std::pair<std::string, int>> entries;
  for (std::size_t s = 0; s < series.size(); ++s) {
    const double* col = kPalette[s % 10];
    cairo_set_source_rgb(c, col[0], col[1], col[2]);
    cairo_set_line_width(c, 2.0);
    bool pen = false;
    for (std::size_t i = 0; i < series[s].x.size() && i < series[s].y.size(); ++i) {
      if (!std::isfinite(series[s].x[i]) || !std::isfinite(series[s].y[i])) {
        pen = false;
        continue;
      }
      const double x = ax.px(series[s].x[i]), y = ax.py(series[s].y[i]);
      pen ? cairo_line_to(c, x, y) : cairo_move_to(c, x, y);
      pen = true;
    }
    cairo_stroke(c);
    for (std::size_t i = 0; i < series[s].x.size() && i < series[s].y.size(); ++i)
      if (std::isfinite(series[s].x[i]) && std::isfinite(series[s].y[i])) {
        cairo_arc(c, ax.px(series[s].x[i]), ax.py(series[s].y[i]), 3, 0, 2 * M_PI);
        cairo_fill(c);
      }
    entries.emplace_back(series[s].name, static_cast<int>(s));
  }
  legend(cv, 580, 70, entries);
  cv.save(path);
}

void write_scatter_plot(const std::string& path, const std::string& title, const std::string& x_label,
                        const std::string& y_label, const Tensor& points, const Tensor& labels,
                        const std::vector<std::string>& class_names) {
  if (points.rank() != 2 || points.dim(1) != 2)
    throw Error("write_scatter_plot(" + path + "): points must be [N, 2], got " + shape_str(points.shape()));
  const std::int64_t n = points.dim(0);
  if (n == 0) throw Error("write_scatter_plot(" + path + "): no points to plot");
  if (labels.rank() != 0 && (labels.rank() != 1 || labels.dim(0) != n))
    throw Error("write_scatter_plot(" + path + "): labels " + shape_str(labels.shape()) + " do not match " +
                std::to_string(n) + " points");
  const float* p = points.f32();
  std::int64_t bad = 0, first_bad = -1;
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[2 * i]) || !std::isfinite(p[2 * i + 1])) {
      if (bad++ == 0) first_bad = i;
    }
  if (bad > 0)
    throw Error("write_scatter_plot(" + path + "): " + std::to_string(bad) + " of " + std::to_string(n) +
                " points are not finite (the first: row " + std::to_string(first_bad) +
                "); the model's weights or inputs hold NaN or Inf");
  Axes ax{90, 50, 590, 550, {0, 0}, {1, 1}};
  for (int k = 0; k < 2; ++k) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = p[i * 2 + k];
    std::sort(v.begin(), v.end());
    ax.lo[k] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.005)];
    ax.hi[k] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.995)];
    if (!(ax.hi[k] > ax.lo[k])) ax.hi[k] = ax.lo[k] + 1.0;
    const double pad = (ax.hi[k] - ax.lo[k]) * 0.03;
    ax.lo[k] -= pad, ax.hi[k] += pad;
  }
  Canvas cv(820, 620);
  cv.text(10, 24, title, 15, 0.0, true);
  ax.draw(cv, x_label, y_label);
  cairo_t* c = cv.cr();
  auto class_of = [&](std::int64_t i) {
    if (labels.rank() != 1) return 0;
    const float l = labels.f32()[i];
    return std::isfinite(l) && l >= 0 && l < 1e6 ? static_cast<int>(l) : 0;
  };
  std::int64_t outside = 0;
  int classes = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const int k = class_of(i);
    classes = std::max(classes, k + 1);
    const double* col = kPalette[k % 10];
    cairo_set_source_rgba(c, col[0], col[1], col[2], 0.6);
    const double x = ax.px(p[2 * i]), y = ax.py(p[2 * i + 1]);
    const double cx = std::clamp(x, ax.x0, ax.x1), cy = std::clamp(y, ax.y0, ax.y1);
    if (cx != x || cy != y) {  // beyond the axes: a small triangle on the border
      ++outside;
      cairo_move_to(c, cx, cy - 3);
      cairo_line_to(c, cx - 3, cy + 3);
      cairo_line_to(c, cx + 3, cy + 3);
      cairo_close_path(c);
    } else {
      cairo_arc(c, x, y, 1.8, 0, 2 * M_PI);
    }
    cairo_fill(c);
  }
  std::vector<std::pair<std::string, int>> entries;
  for (int k = 0; k < classes && labels.rank() == 1; ++k)
    entries.emplace_back(k < static_cast<int>(class_names.size()) ? class_names[static_cast<std::size_t>(k)]
                                                                  : "class " + std::to_string(k),
                         k);
  legend(cv, 610, 70, entries);
  cv.text(ax.x0, 608, std::to_string(n) + " points" +
                          (outside ? "; " + std::to_string(outside) + " beyond the axes (0.5th-99.5th percentiles) drawn as triangles on the border" : ""),
          11);
  cv.save(path);
}

}  // namespace cuae
