// `moefuse run --ep` and `moefuse bench --ep` (ep_commands.h): the expert-parallel layer of moefuse/ep.h under
// mpirun. Compiled against MPI when the build found it; otherwise both say that this build has no MPI.
#include <algorithm>
#include <cstdio>

#include "bench_report.h"
#include "ep_commands.h"
#include "moefuse/error.h"

#ifdef MOEFUSE_HAVE_MPI
#include "moefuse/ep.h"
#include "moefuse/files.h"
#include "moefuse/io.h"
#endif

namespace moefuse::cli {

#ifndef MOEFUSE_HAVE_MPI

int run_ep(const LayerArgs&, const std::string&) {
  throw ValueError("--ep: expected a moefuse built with MPI (libopenmpi-dev installed when it was configured), got "
                   "one built without");
}
int bench_ep(const EpBenchArgs&) { return run_ep(LayerArgs{}, ""); }

#else

namespace {

// MPI for the length of a command: initialised here unless it already is, finalised at the end (errors included).
class MpiSession {
 public:
  MpiSession() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owned_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiSession() {
    if (owned_) MPI_Finalize();
  }
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
};

// Rank r's contiguous share [T r / P, T (r + 1) / P) of T tokens.
int64_t share_begin(int64_t T, int r, int P) { return T * r / P; }

ExpertPlacement placement_of(const std::string& path, const MoeConfig& c, int P) {
  return path.empty() ? ExpertPlacement{} : ExpertPlacement::from_file(path, c.num_experts, P);
}

ExpertParallelLayer make_ep_layer(const MoeConfig& c, const std::string& weights, int64_t layer_index, uint64_t seed,
                                  const EpOptions& o) {
  if (weights.empty()) return ExpertParallelLayer::with_random_weights(c, seed, MPI_COMM_WORLD, o);
  return ExpertParallelLayer::from_checkpoint(c, Checkpoint(weights), layer_index, MPI_COMM_WORLD, o);
}

// Every rank's `values` (the same count on each), on rank 0 (empty elsewhere).
std::vector<double> gather(const std::vector<double>& values, const MpiSession& mpi) {
  std::vector<double> all(mpi.rank() == 0 ? values.size() * size_t(mpi.size()) : 0);
  MPI_Gather(values.data(), int(values.size()), MPI_DOUBLE, all.data(), int(values.size()), MPI_DOUBLE, 0,
             MPI_COMM_WORLD);
  return all;
}

struct EpStage {
  const char* name;
  double EpTimings::*field;
};
constexpr EpStage kEpStages[] = {{"routing", &EpTimings::routing}, {"dispatch", &EpTimings::dispatch},
                                 {"shared", &EpTimings::shared},   {"experts", &EpTimings::experts},
                                 {"combine", &EpTimings::combine}, {"total", &EpTimings::total}};
constexpr size_t kEpStageCount = sizeof(kEpStages) / sizeof(kEpStages[0]);

// One rank's row: tokens, median ms per stage, then rows and bytes of the last forward.
std::vector<double> rank_row(const std::vector<EpTimings>& runs) {
  std::vector<double> row{double(runs.back().tokens)};
  for (const EpStage& s : kEpStages) {
    std::vector<double> v;
    for (const EpTimings& t : runs) v.push_back(t.*s.field);
    row.push_back(median(v));
  }
  const EpTimings& t = runs.back();
  for (int64_t v : {t.rows_sent, t.rows_received, t.dispatch_bytes_out, t.dispatch_bytes_in, t.combine_bytes_out,
                    t.combine_bytes_in})
    row.push_back(double(v));
  return row;
}

Json rank_json(const double* row, int rank, const std::vector<int64_t>& experts) {
  Json stages = Json::object();
  for (size_t s = 0; s < kEpStageCount; ++s) stages[kEpStages[s].name] = row[1 + s];
  const double* b = row + 1 + kEpStageCount;
  return Json{{"rank", rank},
              {"tokens", int64_t(row[0])},
              {"experts", experts},
              {"median_ms", stages},
              {"rows_sent", int64_t(b[0])},
              {"rows_received", int64_t(b[1])},
              {"bytes", Json{{"dispatch_out", int64_t(b[2])},
                             {"dispatch_in", int64_t(b[3])},
                             {"combine_out", int64_t(b[4])},
                             {"combine_in", int64_t(b[5])}}}};
}

// The experts of each rank, on rank 0.
std::vector<std::vector<int64_t>> all_local_experts(const ExpertParallelLayer& layer) {
  std::vector<std::vector<int64_t>> out;
  for (int r = 0; r < layer.size(); ++r) out.push_back(layer.placement().experts_of(r));
  return out;
}

void print_rank_table(const std::vector<double>& rows, size_t width) {
  std::printf("rank  tokens  routing  dispatch   shared  experts  combine    total   rows out/in   KB out/in "
              "(dispatch + combine)\n");
  for (size_t r = 0; r * width < rows.size(); ++r) {
    const double* row = rows.data() + r * width;
    const double* b = row + 1 + kEpStageCount;
    std::printf("%4zu %7lld", r, static_cast<long long>(row[0]));
    for (size_t s = 0; s < kEpStageCount; ++s) std::printf(" %8.3f", row[1 + s]);
    std::printf(" %6lld/%lld %9.1f/%.1f\n", static_cast<long long>(b[0]), static_cast<long long>(b[1]),
                (b[2] + b[4]) / 1024.0, (b[3] + b[5]) / 1024.0);
  }
}

}  // namespace

int run_ep(const LayerArgs& a, const std::string& placement) {
  MpiSession mpi;
  const LoadedConfig lc = load_config(a.config);
  const MoeConfig& c = lc.config;
  const Input in = make_input(a, c);  // every rank builds the whole input and runs its share
  const int64_t T = in.x.size(0);
  const int64_t begin = share_begin(T, mpi.rank(), mpi.size()), end = share_begin(T, mpi.rank() + 1, mpi.size());
  const Tensor x = in.x.narrow(0, begin, end - begin).contiguous();
  EpOptions o;
  o.layer.threads = a.threads;
  o.layer.allow_non_finite_weights = a.allow_non_finite;
  o.layer.numerics = numerics_option(a.numerics);
  o.placement = placement_of(placement, c, mpi.size());
  ExpertParallelLayer layer = make_ep_layer(c, a.weights, a.layer, a.seed, o);

  Tensor y = layer.forward(x, a.prefill);  // warm-up
  std::vector<EpTimings> runs;
  for (int i = 0; i < a.iters; ++i) {
    layer.forward_out(x, a.prefill, y);
    runs.push_back(layer.last_timings());
  }
  // The whole output on rank 0, in token order: the single-process run's checksum.
  const int64_t row_bytes = c.hidden_size * int64_t(dtype_size(c.dtype));
  std::vector<int> counts(size_t(mpi.size())), displs(size_t(mpi.size()));
  for (int r = 0; r < mpi.size(); ++r) {
    displs[size_t(r)] = int(share_begin(T, r, mpi.size()) * row_bytes);
    counts[size_t(r)] = int((share_begin(T, r + 1, mpi.size()) - share_begin(T, r, mpi.size())) * row_bytes);
  }
  Tensor whole = Tensor::empty(c.dtype, {mpi.rank() == 0 ? T : 0, c.hidden_size});
  MPI_Gatherv(y.data(), counts[size_t(mpi.rank())], MPI_BYTE, whole.data(), counts.data(), displs.data(), MPI_BYTE,
              0, MPI_COMM_WORLD);
  const std::vector<double> row = rank_row(runs);
  const std::vector<double> rows = gather(row, mpi);
  if (mpi.rank() != 0) return 0;

  const Checksum sum = checksum(whole);
  if (!a.output.empty()) {
    OutputSet files;
    add_layer_files(files, a);
    write_output(files.staging("--output"), whole);
    files.commit();
  }
  const std::vector<std::vector<int64_t>> experts = all_local_experts(layer);
  if (a.json) {
    Json per_rank = Json::array();
    for (int r = 0; r < mpi.size(); ++r) per_rank.push_back(rank_json(rows.data() + size_t(r) * row.size(), r, experts[size_t(r)]));
    print_json(Json{{"command", "run"},
                    {"version", MOEFUSE_VERSION},
                    {"model", describe_model(lc)},
                    {"execution", Json{{"mode", "expert parallel"},
                                       {"ranks", mpi.size()},
                                       {"placement", placement.empty() ? Json("contiguous") : Json(placement)},
                                       {"weights", a.weights.empty() ? Json(nullptr) : Json(a.weights)},
                                       {"input", in.description},
                                       {"threads_per_rank", a.threads},
                                       {"path", layer.path()}}},
                    {"warmup", 1},
                    {"iters", a.iters},
                    {"tokens", T},
                    {"ranks", per_rank},
                    {"expert_tokens", Json{{"last", layer.expert_tokens()},
                                           {"cumulative", layer.cumulative_expert_tokens()}}},
                    {"checksum", Json{{"sum", sum.sum}, {"fnv1a64", hex64(sum.fnv1a64)}}},
                    {"output", a.output.empty() ? Json(nullptr) : Json(a.output)}});
    return 0;
  }
  std::printf("model:      %s (%s, E %lld, K %lld, H %lld, %s)\n", lc.source.c_str(),
              std::string(model_type_name(c.model_type)).c_str(), static_cast<long long>(c.num_experts),
              static_cast<long long>(c.num_experts_per_tok), static_cast<long long>(c.hidden_size),
              std::string(quant_mode_name(c.quant_mode)).c_str());
  std::printf("execution:  expert parallel over %d ranks, placement %s, %lld tokens cut into one share per rank, "
              "experts' path %s\n",
              mpi.size(), placement.empty() ? "contiguous" : placement.c_str(), static_cast<long long>(T),
              layer.path().c_str());
  std::printf("iterations: %d timed, after 1 warm-up; median ms per stage per rank:\n", a.iters);
  print_rank_table(rows, row.size());
  const std::vector<int64_t>& n = layer.expert_tokens();
  const auto busiest = std::max_element(n.begin(), n.end());
  std::printf("experts:    %lld of %lld had rows in the last forward; busiest expert %lld with %lld rows\n",
              static_cast<long long>(c.num_experts - std::count(n.begin(), n.end(), 0)),
              static_cast<long long>(c.num_experts), static_cast<long long>(busiest - n.begin()),
              static_cast<long long>(n.empty() ? 0 : *busiest));
  std::printf("checksum:   sum %.17g, fnv1a64 %s\n", sum.sum, hex64(sum.fnv1a64).c_str());
  return 0;
}

int bench_ep(const EpBenchArgs& a) {
  MpiSession mpi;
  const LoadedConfig lc = load_config(a.config);
  const MoeConfig& c = lc.config;
  EpOptions o;
  o.layer.threads = a.threads;
  o.layer.numerics = numerics_option(a.numerics);
  o.placement = placement_of(a.placement, c, mpi.size());
  ExpertParallelLayer layer = make_ep_layer(c, "", 0, a.seed, o);
  Json table = Json::array();
  if (mpi.rank() == 0)
    std::printf("%s, expert parallel over %d ranks (%d threads each; 0 = every core): per-rank tokens T, median of "
                "%d forwards\n", lc.source.c_str(), mpi.size(), a.threads, a.iters);
  for (int64_t T : a.tokens) {
    // Each rank its own T tokens (seeded by rank): T per rank, P * T in all.
    const Tensor x = random_tokens(T, c.hidden_size, a.seed + uint64_t(mpi.rank()) * 7919u, c.dtype);
    Tensor y = Tensor::empty(c.dtype, {T, c.hidden_size});
    const bool prefill = T >= kPrefillFrom;  // as bench without --ep: decode below, prefill from there
    for (int i = 0; i < a.warmup; ++i) layer.forward_out(x, prefill, y);
    std::vector<EpTimings> runs;
    for (int i = 0; i < a.iters; ++i) {
      layer.forward_out(x, prefill, y);
      runs.push_back(layer.last_timings());
    }
    const std::vector<double> row = rank_row(runs);
    const std::vector<double> rows = gather(row, mpi);
    if (mpi.rank() != 0) continue;
    std::printf("\nT = %lld per rank (%s, experts' path %s)\n", static_cast<long long>(T), prefill ? "prefill" : "decode",
                layer.path().c_str());
    print_rank_table(rows, row.size());
    Json per_rank = Json::array();
    for (int r = 0; r < mpi.size(); ++r)
      per_rank.push_back(rank_json(rows.data() + size_t(r) * row.size(), r, layer.placement().experts_of(r)));
    table.push_back(Json{{"tokens_per_rank", T}, {"prefill", prefill}, {"path", layer.path()}, {"ranks", per_rank}});
  }
  if (mpi.rank() == 0 && !a.json.empty()) {  // written whole or not at all
    const std::string text = Json{{"command", "bench --ep"}, {"version", MOEFUSE_VERSION},
                                  {"model", describe_model(lc)}, {"ranks", mpi.size()},
                                  {"threads_per_rank", a.threads}, {"iters", a.iters}, {"rows", table}}
                                 .dump(2, ' ', false, Json::error_handler_t::replace) +
                             "\n";
    write_file_atomic(a.json, "--json", [&](const ByteSink& sink) { sink(text.data(), text.size()); });
  }
  return 0;
}

#endif

}  // namespace moefuse::cli
