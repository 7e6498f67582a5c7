#include "roofline_plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>

#include "moefuse/error.h"
#include "moefuse/files.h"

namespace moefuse::cli {
namespace {

constexpr double kWidth = 900, kHeight = 560;
constexpr double kLeft = 80, kRight = kWidth - 240, kTop = 72, kBottom = kHeight - 62;

struct Rgb {
  double r, g, b;
};
// Tableau's ten: distinct for the colour-blind as far as ten colours can be.
constexpr Rgb kPalette[] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                            {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                            {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133},
                            {0.090, 0.745, 0.812}};

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A log axis: [lo, hi] in log10 units mapped onto [a, b] pixels.
struct Axis {
  double lo, hi, a, b;
  double at(double v) const { return a + (std::log10(v) - lo) / (hi - lo) * (b - a); }
};

void text(cairo_t* cr, const std::string& s, double x, double y, double align_x, double align_y) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.x_bearing - align_x * e.width, y - e.y_bearing - align_y * e.height);
  cairo_show_text(cr, s.c_str());
}

void set_color(cairo_t* cr, int index) {
  const Rgb& c = kPalette[size_t(index % int(std::size(kPalette)) + int(std::size(kPalette))) % std::size(kPalette)];
  cairo_set_source_rgb(cr, c.r, c.g, c.b);
}

void set_stroke(cairo_t* cr, const PlotLine& line) {
  set_color(cr, line.color);
  cairo_set_line_width(cr, line.dashed ? 1.5 : 2.0);
  const double dash[] = {6.0, 4.0};
  cairo_set_dash(cr, dash, line.dashed ? 2 : 0, 0);
}

void draw(cairo_t* cr, const Plot& plot) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // The points that have a place on log axes, and the ranges they span.
  std::vector<std::vector<std::pair<double, double>>> points;
  std::set<double> xs;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const PlotLine& line : plot.lines) {
    std::vector<std::pair<double, double>> p;
    for (size_t i = 0; i < std::min(line.x.size(), line.y.size()); ++i)
      if (line.x[i] > 0 && line.y[i] > 0 && std::isfinite(line.x[i]) && std::isfinite(line.y[i]))
        p.emplace_back(line.x[i], line.y[i]);
    std::sort(p.begin(), p.end());
    for (const auto& [x, y] : p) {
      xs.insert(x);
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    points.push_back(std::move(p));
  }
  if (xs.empty()) xmin = 1, xmax = 10, ymin = 1, ymax = 10;
  double xlo = std::log10(xmin), xhi = std::log10(xmax);
  const double xpad = xhi > xlo ? 0.06 * (xhi - xlo) : 0.5;
  xlo -= xpad, xhi += xpad;
  const double ylo = std::floor(std::log10(ymin)), yhi = std::max(ylo + 1, std::ceil(std::log10(ymax)));
  const Axis ax{xlo, xhi, kLeft, kRight}, ay{ylo, yhi, kBottom, kTop};

  // Grid and tick labels.
  cairo_set_font_size(cr, 11);
  cairo_set_line_width(cr, 1);
  std::vector<double> yticks;
  for (double e = ylo; e <= yhi + 1e-9; e += 1) {
    yticks.push_back(std::pow(10.0, e));
    if (yhi - ylo < 2 && e < yhi) yticks.insert(yticks.end(), {2 * std::pow(10.0, e), 5 * std::pow(10.0, e)});
  }
  for (double y : yticks) {
    const double py = std::round(ay.at(y)) + 0.5;
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, kLeft, py), cairo_line_to(cr, kRight, py), cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    text(cr, number(y), kLeft - 6, py, 1.0, 0.5);
  }
  if (xs.empty()) xs = {1, 10};
  for (double x : xs) {
    const double px = std::round(ax.at(x)) + 0.5;
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, px, kTop), cairo_line_to(cr, px, kBottom), cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    text(cr, number(x), px, kBottom + 6, 0.5, 0.0);
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, kLeft + 0.5, kTop + 0.5, kRight - kLeft, kBottom - kTop);
  cairo_stroke(cr);

  // The lines, clipped to the plot area.
  cairo_save(cr);
  cairo_rectangle(cr, kLeft, kTop, kRight - kLeft, kBottom - kTop);
  cairo_clip(cr);
  for (size_t i = 0; i < plot.lines.size(); ++i) {
    const PlotLine& line = plot.lines[i];
    set_stroke(cr, line);
    for (size_t j = 0; j < points[i].size(); ++j) {
      const double px = ax.at(points[i][j].first), py = ay.at(points[i][j].second);
      if (j == 0)
        cairo_move_to(cr, px, py);
      else
        cairo_line_to(cr, px, py);
    }
    cairo_stroke(cr);
    if (line.dashed) continue;
    for (const auto& [x, y] : points[i]) {
      cairo_arc(cr, ax.at(x), ay.at(y), 3.5, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);

  // Legend, right of the plot area.
  cairo_set_font_size(cr, 12);
  double ly = kTop + 8;
  for (const PlotLine& line : plot.lines) {
    set_stroke(cr, line);
    cairo_move_to(cr, kRight + 16, ly), cairo_line_to(cr, kRight + 44, ly), cairo_stroke(cr);
    if (!line.dashed) cairo_arc(cr, kRight + 30, ly, 3.5, 0, 2 * M_PI), cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text(cr, line.label, kRight + 52, ly, 0.0, 0.5);
    ly += 20;
  }

  // Titles and axis labels.
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  text(cr, plot.title, kWidth / 2, 16, 0.5, 0.0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  text(cr, plot.subtitle, kWidth / 2, 40, 0.5, 0.0);
  cairo_set_font_size(cr, 13);
  text(cr, plot.x_label, (kLeft + kRight) / 2, kHeight - 22, 0.5, 0.0);
  cairo_save(cr);
  cairo_translate(cr, 22, (kTop + kBottom) / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, plot.y_label, 0, 0, 0.5, 0.5);
  cairo_restore(cr);
}

[[noreturn]] void fail(const std::string& option, const std::string& path, cairo_status_t status) {
  throw IoError(option + ": " + path + ": expected cairo to draw the chart, got " + cairo_status_to_string(status));
}

}  // namespace

std::optional<PlotFormat> plot_format(const std::string& path) {
  const size_t dot = path.find_last_of("./");
  if (dot == std::string::npos || path[dot] != '.') return std::nullopt;
  std::string ext = path.substr(dot);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".png") return PlotFormat::png;
  if (ext == ".svg") return PlotFormat::svg;
  return std::nullopt;
}

void write_plot(const std::string& path, const Plot& plot, const std::string& option) {
  std::string bytes;
  if (plot_format(path) == PlotFormat::svg) {
    Surface surface(cairo_svg_surface_create_for_stream(append, &bytes, kWidth, kHeight));
    {
      Context cr(cairo_create(surface.get()));
      draw(cr.get(), plot);
      if (cairo_status(cr.get()) != CAIRO_STATUS_SUCCESS) fail(option, path, cairo_status(cr.get()));
    }
    cairo_surface_finish(surface.get());
    if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS)
      fail(option, path, cairo_surface_status(surface.get()));
  } else {
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(kWidth), int(kHeight)));
    {
      Context cr(cairo_create(surface.get()));
      draw(cr.get(), plot);
      if (cairo_status(cr.get()) != CAIRO_STATUS_SUCCESS) fail(option, path, cairo_status(cr.get()));
    }
    const cairo_status_t st = cairo_surface_write_to_png_stream(surface.get(), append, &bytes);
    if (st != CAIRO_STATUS_SUCCESS) fail(option, path, st);
  }
  // The chart is drawn once per process: hand back cairo's font caches and fontconfig's configuration (which would
  // otherwise stay allocated until exit, and show as leaks under LeakSanitizer).
  cairo_debug_reset_static_data();
  FcFini();
  write_file_atomic(path, option, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

}  // namespace moefuse::cli
