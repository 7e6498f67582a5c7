// `moefuse quantize` of a whole model folder: --layers parsed, moefuse::quantize_model run with a progress bar
// (bytes and bytes/s, on a terminal only), and a summary of what was written.
#include "quantize_folder.h"

#include <unistd.h>

#include <chrono>
#include <charconv>
#include <cstdio>

#include "common.h"
#include "moefuse/error.h"
#include "moefuse/model.h"

namespace moefuse::cli {
namespace {

// "3,5-7" -> {3, 5, 6, 7}.
std::vector<int64_t> parse_layers(const std::string& spec) {
  auto fail = [&]() -> std::vector<int64_t> {
    throw ValueError("--layers: expected layer numbers and ranges separated by commas (e.g. 3,5-7), got " + spec);
  };
  auto number = [&](std::string_view s, int64_t& v) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size() && v >= 0;
  };
  std::vector<int64_t> out;
  size_t at = 0;
  while (at <= spec.size()) {
    size_t end = spec.find(',', at);
    if (end == std::string::npos) end = spec.size();
    const std::string_view part(spec.data() + at, end - at);
    const size_t dash = part.find('-');
    int64_t lo = 0, hi = 0;
    if (dash == std::string_view::npos) {
      if (!number(part, lo)) return fail();
      hi = lo;
    } else if (!number(part.substr(0, dash), lo) || !number(part.substr(dash + 1), hi) || hi < lo ||
               hi - lo > kMaxModelLayers) {
      return fail();
    }
    for (int64_t l = lo; l <= hi; ++l) out.push_back(l);
    at = end + 1;
  }
  return out;
}

// "quantize [#######.......] 12.3/45.6 MB, 34.5 MB/s" on stderr, redrawn at most ten times a second.
class ByteProgress {
 public:
  ByteProgress() : active_(isatty(STDERR_FILENO) == 1), start_(Clock::now()), last_(start_) {}
  ~ByteProgress() {
    if (active_ && drawn_) std::fprintf(stderr, "\r\033[K");
  }
  void update(int64_t done, int64_t total) {
    const auto now = Clock::now();
    if (!active_ || (now - last_ < std::chrono::milliseconds(100) && done < total)) return;
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    const int filled = total > 0 ? int(double(done) / double(total) * kWidth) : kWidth;
    const double s = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\rquantize [%s%s] %.1f/%.1f MB, %.1f MB/s", std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(kWidth - filled), '.').c_str(), double(done) / 1e6, double(total) / 1e6,
                 s > 0 ? double(done) / 1e6 / s : 0.0);
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool active_;
  bool drawn_ = false;
  Clock::time_point start_, last_;
};

}  // namespace

void check_int4_flags(int64_t group_size, bool asymmetric, QuantMode mode) {
  if ((group_size || asymmetric) && !int4_weights(mode))
    throw ValueError(std::string("quantize: ") + (group_size ? "--group-size" : "--asymmetric") +
                     ": expected --mode w4a16 or w4a8 (int4 groups), got quant_mode " +
                     std::string(quant_mode_name(mode)));
}

int quantize_folder(const QuantizeFolderArgs& a) {
  QuantizeModelOptions o;
  o.mode = a.mode == "w8a8c8" ? QuantMode::w8a8c8
           : a.mode == "w4a16" ? QuantMode::w4a16
           : a.mode == "w4a8"  ? QuantMode::w4a8
                               : QuantMode::w8a8;
  const bool int4 = int4_weights(o.mode);
  check_int4_flags(a.group_size, a.asymmetric, o.mode);
  if (a.group_size) o.group_size = a.group_size;
  o.symmetric = !a.asymmetric;
  if (!a.layers.empty()) o.layers = parse_layers(a.layers);
  o.threads = a.threads;
  QuantizeModelResult r;
  {
    ByteProgress progress;
    o.progress = [&progress](int64_t done, int64_t total) { progress.update(done, total); };
    r = quantize_model(a.weights, a.out, o);
  }
  const std::string mode(quant_mode_name(o.mode));
  if (a.json) {
    print_json(Json{{"command", "quantize"},
                    {"version", MOEFUSE_VERSION},
                    {"input", a.weights},
                    {"output", a.out},
                    {"quant_mode", mode},
                    {"group_size", int4 ? Json(o.group_size) : Json(nullptr)},
                    {"symmetric", int4 ? Json(o.symmetric) : Json(nullptr)},
                    {"layers", r.layers},
                    {"files", r.files},
                    {"tensors", r.tensors},
                    {"data_bytes", r.data_bytes}});
    return 0;
  }
  std::string layers;
  for (int64_t l : r.layers) layers += (layers.empty() ? "" : ", ") + std::to_string(l);
  std::printf("read:       %s\n", a.weights.c_str());
  if (int4)
    std::printf("quantised:  %s, layers %s (int4 weights in GPTQ's format, round to nearest, group size %lld, %s)\n",
                mode.c_str(), layers.c_str(), static_cast<long long>(o.group_size),
                o.symmetric ? "symmetric" : "asymmetric");
  else
    std::printf("quantised:  %s, layers %s (int8 weights with one f32 scale per output channel)\n", mode.c_str(),
                layers.c_str());
  std::printf("wrote:      %s: %zu files, %lld tensors, %lld bytes of data\n", a.out.c_str(), r.files.size(),
              static_cast<long long>(r.tensors), static_cast<long long>(r.data_bytes));
  std::printf("run it:     moefuse run --weights %s --layer %lld\n", a.out.c_str(),
              static_cast<long long>(r.layers.front()));
  return 0;
}

}  // namespace moefuse::cli
