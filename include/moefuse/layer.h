// moefuse/layer.h — one Mixture-of-Experts layer: router, top-k gating, routing, experts, shared expert, combine.
//
// The layer runs the operator chain of docs/layer.md §1 (the seed's "TP-mode MoE flow") on the operators of
// ops.h, for bf16, f16 and f32 models and the quantised chains w8a8 and w8a8c8. Its output is defined by that chain;
// execution options (exe_mode, chunking, thread count, the fused path) never change a bit of it.
//
//   moefuse::MoeConfig cfg = moefuse::load_preset("qwen3-30b-a3b");
//   moefuse::MoeLayer layer = moefuse::MoeLayer::with_random_weights(cfg, /*seed=*/1);
//   moefuse::Tensor y = layer.forward(x);            // x: [T, H] in cfg.dtype, y: [T, H] in cfg.dtype
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/numerics.h"
#include "moefuse/tensor.h"

namespace moefuse {

class Checkpoint;

/// The layer's weights, in the layouts its operators read.
///
/// Expert projections are stored the way Hugging Face stores them ([out, in] per expert) and handed to
/// grouped_matmul as transposed views, which it reads in place:
///   w13: storage [E, 2I, H] (rows 0..I-1 = gate_proj, I..2I-1 = up_proj), used as the view [E, H, 2I];
///   w2:  storage [E, H, I] (down_proj), used as the view [E, I, H].
/// Float models keep them in the model dtype; w8a8 / w8a8c8 keep int8 with per-output-channel fp32 scales; w4a16, w4a8
/// keeps int4 values q (u8, one value 0..15 per byte) with an fp32 scale s and a zero point z (u8, 0..15) per output
/// channel and group of G = quant_group_size input channels: the weight is (q - z) * s (docs/layer.md §1).
struct LayerWeights {
  Tensor router;            // [E, H] model dtype (mlp.gate.weight)
  Tensor router_bias;       // [E] f32: deepseek_v3's e_score_correction_bias (undefined otherwise)
  Tensor w13;               // [E, 2I, H] storage, model dtype or i8
  Tensor w2;                // [E, H, I] storage, model dtype or i8
  Tensor w13_scale;         // [E, 2I] f32 (w8a8, w8a8c8); [E, 2I, H/G] f32 (w4a16)
  Tensor w2_scale;          // [E, H] f32 (w8a8, w8a8c8); [E, H, I/G] f32 (w4a16)
  Tensor w13_zero;          // [E, 2I, H/G] u8 (w4a16 only)
  Tensor w2_zero;           // [E, H, I/G] u8 (w4a16 only)
  Tensor smooth_scale1;     // [E, H] f32, optional (w8a8, w8a8c8): multiplies x before its dynamic quantisation
  Tensor smooth_scale2;     // [E, I] f32, optional (w8a8): dequant_swiglu_quant's quant_scale
  Tensor clip_alpha;        // [E] f32 (w8a8c8): swiglu_clip_quant's group_alpha (1 = no clipping)
  Tensor shared_w13;        // [1, 2Is, H] storage (Is = shared expert width), undefined without shared experts
  Tensor shared_w2;         // [1, H, Is] storage
  Tensor shared_w13_scale;  // [1, 2Is] f32 (w8a8, w8a8c8); [1, 2Is, H/G] f32 (w4a16)
  Tensor shared_w2_scale;   // [1, H] f32 (w8a8, w8a8c8); [1, H, Is/G] f32 (w4a16)
  Tensor shared_w13_zero;   // [1, 2Is, H/G] u8 (w4a16 only)
  Tensor shared_w2_zero;    // [1, H, Is/G] u8 (w4a16 only)
  Tensor shared_gate;       // [1, H] model dtype: qwen2_moe's shared_expert_gate (undefined otherwise)
  // Act order (w4a16, w4a8; GPTQ's desc_act): the input order of w13, optional. Column j of expert e's w13 (gate and
  // up alike) multiplies input channel w13_perm[e, j]: the layer gathers each expert's rows of x into that order
  // before its first projection, so that groups of G consecutive columns may hold channels spread over x. Each row
  // a permutation of 0..H-1, ascending within each group of G columns (the order a g_idx defines); undefined =
  // the identity (no gather). Loaded GPTQ checkpoints set them when a g_idx is permuted (docs/layer.md §5).
  Tensor w13_perm;          // [E, H] i32
  Tensor shared_w13_perm;   // [1, H] i32: the same for the shared expert
};

/// Execution options (none but `numerics` changes the output) and what a load accepts.
struct LayerOptions {
  /// Threads working on a forward: 0 = every core (hardware_concurrency), else 1..kMaxThreads (1024,
  /// moefuse/threads.h); more is a ValueError. They are a limit on the process's one pool (moefuse/threads.h), whose
  /// workers start when the layer is made (ResourceError when they cannot). Decode-sized chunks run the chain on the
  /// calling thread while the grouped matmuls spread (expert x row block x column block) tasks over all threads;
  /// chunks of at least 128 tokens per thread are split into one share of tokens per thread, each running the whole
  /// chain. Each token's
  /// result depends neither on which tokens share its batch nor on how work is cut (docs/operators.md, Numerics:
  /// determinism), so any count gives the same bits.
  int threads = 0;
  /// Memory the layer may take, in bytes: 0 = available_memory_bytes(). Weights and workspaces are checked against
  /// it before anything is allocated.
  int64_t memory_limit_bytes = 0;
  /// Accept NaN and infinite weights. By default a layer refuses them when it is made (from_checkpoint: ValueError
  /// "<checkpoint>: <tensor name>: expected finite values (...), got nan at [r, i]", checked while each tensor is
  /// read; the constructor: "MoeLayer: <LayerWeights member>: ... got inf at [e, r, i]"), because a single NaN
  /// in the router or in an expert turns outputs NaN. Random weights are always finite.
  bool allow_non_finite_weights = false;
  /// The numerics tier (moefuse/numerics.h) of the layer's GEMMs: unset = the config's `numerics` key when it has
  /// one, else default_numerics() (MOEFUSE_NUMERICS, else native), resolved when the layer is made. portable: the
  /// output is bitwise reference_layer_forward's on every CPU. native: on a CPU with AMX-BF16, the expert and shared
  /// expert GEMMs of bf16 weights run on AMX tiles, within the tolerance of docs/layer.md §2 of the oracle (still the
  /// same bits for any thread count, batch, chunking or path); the router GEMM stays portable in both tiers, so the
  /// routing (top-k experts and their weights) is bitwise the oracle's. Elsewhere native runs the portable kernels.
  std::optional<Numerics> numerics = std::nullopt;
};

/// Milliseconds spent per stage in the last forward: summed over chunks, averaged over the threads that ran (each
/// thread runs every stage on its share of the tokens); `total` is the forward's wall time.
struct LayerTimings {
  double router = 0, gating = 0, routing = 0, experts = 0, shared = 0, combine = 0, total = 0;
  int64_t tokens = 0;
  int64_t chunks = 0;
  /// Bytes of weights the forward read: per chunk, the router (and deepseek_v3's bias), every expert with at least
  /// one of the chunk's tokens (w13, w2 and their scales, smooth scales and clip factor) and the shared expert —
  /// counted once per part of the chunk: a prefill chunk split between threads has each thread run the chain on its
  /// share of the tokens, reading the router, the shared expert and every expert its share routes to again. The
  /// numerator of the bandwidth `moefuse bench` reports.
  int64_t weight_bytes = 0;
  /// Distinct experts the chunks ran, summed over chunks.
  int64_t active_experts = 0;
};

/// Bytes of the weights a config needs resident (LayerWeights of that config).
int64_t layer_weight_bytes(const MoeConfig& config);

/// Whether MoeLayer::from_checkpoint keeps the FP8 block-scaled expert projections of a checkpoint declaring `fp8`
/// (read_fp8_settings, ModelConfig::fp8) one byte per weight for a layer of `config` — provided every expert
/// projection the layer reads is FP8: the model dtype is bf16 (the FP8 kernels round each weight to bf16), quant_mode
/// none, and every block of 128 input channels of each projection lies inside one of the checkpoint's blocks
/// (weight_block_size's second value a multiple of 128, or at least H, I and the shared width). Otherwise they are
/// dequantised to the model dtype on load (docs/layer.md §7). False when fp8.source is empty.
bool fp8_weights_kept_one_byte(const MoeConfig& config, const Fp8Settings& fp8);

/// layer_weight_bytes for a layer read from a checkpoint declaring `fp8`: with fp8_weights_kept_one_byte, the expert
/// projections count one byte per weight plus an fp32 scale per output channel and 128 input channels.
int64_t layer_weight_bytes(const MoeConfig& config, const Fp8Settings& fp8);

/// Deterministic random input tokens [tokens, hidden] in `dtype` (f32, f16 or bf16) from `seed`: each value the sum
/// of four uniform values in [-sqrt(3)/2, sqrt(3)/2) (mean 0, standard deviation 1), rounded to dtype (RNE). What
/// `moefuse run` and `moefuse bench` feed a layer without --input; the same seed gives the same tokens everywhere.
/// ValueError for a negative count.
Tensor random_tokens(int64_t tokens, int64_t hidden, uint64_t seed, DType dtype);
/// Bytes of the workspace one thread needs to run `tokens` tokens (the layer plans min(T, chunk) per thread).
int64_t layer_workspace_bytes(const MoeConfig& config, int64_t tokens);
/// Memory this process may still take (MemAvailable of /proc/meminfo, or the physical memory elsewhere).
int64_t available_memory_bytes();

/// The routing of a forward: the top-k experts of every token, in slot order ([T, K] i32) and the weights the
/// combine multiplies their outputs by ([T, K] in the model dtype).
struct LayerRouting {
  Tensor topk_idx;
  Tensor topk_weight;
};

class MoeLayer {
 public:
  /// A layer over given weights. Checks every tensor's presence, shape and dtype against the config (ValueError /
  /// TypeError naming the weight, e.g. "MoeLayer: w13: expected shape [64, 2048, 2048], got ...") and, unless
  /// options.allow_non_finite_weights, that every float weight is finite (ValueError naming the weight and index).
  MoeLayer(const MoeConfig& config, LayerWeights weights, const LayerOptions& options = {});
  ~MoeLayer();
  MoeLayer(MoeLayer&&) noexcept;
  MoeLayer& operator=(MoeLayer&&) noexcept;

  /// Deterministic random weights from `seed`, scaled like a trained model: every projection uniform with standard
  /// deviation 1/sqrt(fan_in) (router included), deepseek_v3's correction bias uniform in [-0.05, 0.05), clip
  /// factors 1. Quantised configs quantise these float weights per output channel (as `moefuse quantize` does).
  /// The same seed gives the same weights for any thread count. Refuses (ResourceError, both numbers in the
  /// message) a config whose weights and workspace do not fit in available memory, before allocating anything.
  static MoeLayer with_random_weights(const MoeConfig& config, uint64_t seed, const LayerOptions& options = {});

  /// The weights of with_random_weights (a bf16 float config), with every expert projection (routed and shared)
  /// then quantised to FP8 the way the FP8 block-scaled releases are made: e4m3 values (round to nearest even,
  /// saturating) with one fp32 scale max|w| / 448 per block of 128 output x 128 input channels of each projection
  /// (gate_proj and up_proj apart). The layer keeps them one byte per weight plus scales, as from_checkpoint keeps
  /// an FP8 checkpoint (docs/layer.md §7); weights() gives the bf16 weights they stand for. For `moefuse bench
  /// --quant fp8`. Errors: ValueError for a dtype other than bf16 or a quant_mode other than none; as
  /// with_random_weights otherwise.
  static MoeLayer with_random_fp8_weights(const MoeConfig& config, uint64_t seed, const LayerOptions& options = {});

  /// Weights of layer `layer_index` read from a Hugging Face checkpoint by the names of docs/layer.md §5
  /// (docs/layer.md lists them, with the int8 names). FP8 block-scaled projections (docs/layer.md §7) are kept one
  /// byte per weight in a bf16 layer whose projections are all FP8 with blocks of K that fit 128, else dequantised
  /// (fp32, then rounded to the model dtype). Float tensors are converted to the model dtype (RNE); a float
  /// checkpoint with a quantised config is quantised per output channel on load; an int8 checkpoint needs a
  /// quantised config. Errors: IoError naming the checkpoint and tensor for a missing tensor; ValueError/TypeError
  /// for a wrong shape or dtype; ValueError naming the tensor and index of the first non-finite value (unless
  /// options.allow_non_finite_weights); ResourceError when it does not fit in memory (checked before reading).
  static MoeLayer from_checkpoint(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                                  const LayerOptions& options = {});

  /// Runs the layer on x [T, H] (model dtype, any strides) and returns [T, H] in the model dtype. `is_prefill`
  /// selects the prefill schedule (tokens cut into chunks of moe_chunk_max_len); decode batches larger than a chunk
  /// are cut the same way so that memory stays bounded. In ge_graph mode the first forward plans workspaces for
  /// its chunk size and later forwards of at most that size allocate nothing (forward_out) — a larger one plans
  /// again. `routing`, when given, receives this forward's routing as new tensors (the one allocation such a call
  /// makes beyond forward_out's). Errors: ValueError/TypeError for x of the wrong rank, width or dtype.
  Tensor forward(const Tensor& x, bool is_prefill = false, LayerRouting* routing = nullptr);
  /// As forward(), writing into `out` ([T, H], model dtype, contiguous, writable; must not overlap x).
  void forward_out(const Tensor& x, bool is_prefill, const Tensor& out, LayerRouting* routing = nullptr);

  const MoeConfig& config() const;
  /// The weights as plain tensors (the layouts of LayerWeights). The layer keeps its projections only packed for
  /// the kernels (packed once, when the layer is made), so this copies them out — as much memory as the projections
  /// take; meant for checking and saving (`moefuse verify`, `moefuse quantize`), not for a serving loop.
  LayerWeights weights() const;
  int threads() const;
  /// Stage times of the last forward.
  const LayerTimings& last_timings() const;
  /// Which path the last non-empty forward ran: "superkernel" (the fused decode path: enable_superkernel, a decode
  /// forward (is_prefill false), any chain with I and the shared width multiples of 32), "chain" (the operator chain,
  /// asked for: prefill, or enable_superkernel off) or "chain: <why>" when the fused path was asked for and declined,
  /// e.g. "chain: I=80 is not a multiple of 32". Both paths give bitwise the same output. "chain" before any forward.
  std::string path() const;
  /// The GEMM kernel the last non-empty forward's expert projections dispatched to: the kernel registry's variant
  /// name, e.g. "gemm_bf16w_f32_6x16__avx2" (float chains) or "gemm_s8_s32_6x64__avx512vnni" (quantised ones),
  /// chosen from active_isa(), use_avx512_vnni() (moefuse/cpu.h) and the layer's numerics tier — when the layer was
  /// made for the fused path, at each call for the chain's grouped matmuls. "" before any forward.
  std::string kernel() const;
  /// The numerics tier the layer runs (LayerOptions::numerics resolved when it was made).
  Numerics numerics() const;
  /// [E]: rows routed to each expert in the last forward (its tokens' top-k choices), and the same summed over
  /// every forward since the layer was made — the load an expert placement balances (moefuse/ep.h).
  const std::vector<int64_t>& expert_tokens() const;
  const std::vector<int64_t>& cumulative_expert_tokens() const;

 private:
  // With fp8_form, weights in the internal FP8 form (one byte per weight) are accepted too.
  MoeLayer(const MoeConfig& config, LayerWeights weights, const LayerOptions& options, bool fp8_form);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The layer's oracle: what MoeLayer::forward computes, written as a plain loop over tokens and, per token, over
/// its chosen experts, the way Hugging Face's MoE blocks compute (route, run each chosen expert's MLP, add the
/// weighted results), with the rounding points of docs/layer.md §1. It computes every step itself — router logits
/// (the dot products of docs/layer.md §1: H ascending, or for bf16 weights vdpbf16ps's pairs with DAZ/FTZ),
/// softmax / sigmoid scores, group-limited top-k, renormalisation, the experts' MLPs and their int8
/// (de)quantisation, the shared expert and the combine — and shares no code with the layer's compute path (no
/// operator, no scalar reference operator, no kernel, no thread pool, not the library's bf16 step); only the
/// argument checks are common. One thread, no chunking; slow (meant for checking: `moefuse verify`, the tests). A correct layer
/// equals it bit for bit, output and routing.
///
/// x: [T, H] in config.dtype (any strides); weights: as MoeLayer's constructor takes them (non-finite values are
/// computed with, not refused). Returns [T, H] in config.dtype; `routing`, when given, receives the top-k indices
/// [T, K] i32 and the combine weights [T, K] in config.dtype. Errors: as the constructor for the config and the
/// weights; ValueError / TypeError "reference_layer_forward: x: ..." for x of the wrong rank, width or dtype.
Tensor reference_layer_forward(const MoeConfig& config, const LayerWeights& weights, const Tensor& x,
                               LayerRouting* routing = nullptr);

/// The Hugging Face name prefix of a layer's MoE block: "model.layers.L.mlp" ("model.layers.L.block_sparse_moe"
/// for mixtral).
std::string layer_checkpoint_prefix(const MoeConfig& config, int64_t layer_index);

/// Every weight of `weights` under its checkpoint name for layer `layer_index` (docs/layer.md §5, the names
/// MoeLayer::from_checkpoint reads), as views of `weights`: the int8 format ("weight" + "weight_scale", smooth
/// scales, clip factors) when the config is quantised. write_safetensors() of the result is a checkpoint that
/// from_checkpoint reads back to the same weights (how `moefuse quantize` writes its output).
NamedTensors layer_checkpoint_tensors(const MoeConfig& config, const LayerWeights& weights, int64_t layer_index);

}  // namespace moefuse
