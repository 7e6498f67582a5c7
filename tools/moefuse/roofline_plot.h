// The picture of `moefuse bench --plot`: a log-log chart of lines (time against tokens, measured lines solid with
// markers, roofline lower bounds dashed), drawn once with cairo onto a PNG or an SVG surface.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace moefuse::cli {

struct PlotLine {
  std::string label;
  std::vector<double> x, y;  // points with x <= 0 or y <= 0 (no value on a log axis) are left out
  int color = 0;             // index into the chart's palette (any value: taken modulo its size)
  bool dashed = false;       // dashed and without markers (a bound), else solid with a marker per point
};

struct Plot {
  std::string title, subtitle;
  std::string x_label, y_label;
  std::vector<PlotLine> lines;
};

enum class PlotFormat { png, svg };

/// The format a file name asks for by its extension (".png" / ".svg", any case); nullopt for anything else.
std::optional<PlotFormat> plot_format(const std::string& path);

/// Draws `plot` (900 x 560 pixels / points) and writes it to `path` atomically in the format plot_format(path)
/// names (which must be one). x ticks are the distinct x values, y ticks the powers of ten (and 2x, 5x when the
/// range is under two decades). Throws IoError naming `option` and the file when cairo or the write fails.
void write_plot(const std::string& path, const Plot& plot, const std::string& option);

}  // namespace moefuse::cli
