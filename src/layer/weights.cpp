// Over 500 lines: the one place that knows where every weight comes from (random, float, int8, GPTQ int4 and FP8
// checkpoints) and under which name; to be split by source if it grows further.
#include "layer/weights.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <tuple>
#include <vector>

#include "base/check.h"
#include "base/elements.h"
#include "base/quantize.h"
#include "base/quantize_int4.h"
#include "base/random.h"
#include "layer/finite.h"
#include "layer/fp8_weights.h"
#include "layer/gptq.h"
#include "moefuse/error.h"

namespace moefuse::layer {

static std::string shared_prefix(const MoeConfig& c, const std::string& prefix);

namespace {

constexpr const char* kOp = "MoeLayer";

bool quantised(const MoeConfig& c) { return c.quant_mode != QuantMode::none; }
bool int4_weights(const MoeConfig& c) { return moefuse::int4_weights(c.quant_mode); }
bool int8_weights(const MoeConfig& c) { return quantised(c) && !int4_weights(c); }
DType storage_dtype(const MoeConfig& c) { return int4_weights(c) ? DType::u8 : quantised(c) ? DType::i8 : c.dtype; }

// ---- filling one projection --------------------------------------------------------------------------------------

// Produces row r (of `in` fp32 values) of an [out, in] projection.
using RowSource = std::function<void(int64_t r, float* row)>;

// Writes rows [0, out) of a projection into storage[e, row0 + r, :] — converted to the model dtype (RNE), or, for
// the quantised chains, quantised per output channel (quantize_row_dynamic: scale = max|w| / 127) with the scale
// in scales[e, row0 + r]. With `check_finite`, stops at the first row holding a value that is not finite, or not
// once converted to a float storage dtype (70000 in f16), and returns its flat index r * in + i in the source;
// otherwise (or when every value is finite) returns -1.
// w4a16 (u8 storage) rounds each row to int4 per group instead (quantize_row_int4), its scales and zero points in
// scales[e, row0 + r, :] and int4.zeros[e, row0 + r, :].
struct Int4Target {
  Tensor zeros;  // [E, out, in / G] u8 (undefined: not int4)
  int64_t group = 0;
  bool symmetric = true;
};

int64_t fill_projection(const Tensor& storage, const Tensor& scales, int64_t e, int64_t row0, int64_t out, int64_t in,
                        const RowSource& source, bool check_finite, const Int4Target& int4 = {}) {
  std::vector<float> row(size_t(in > 0 ? in : 1));
  const int64_t rows_per_expert = storage.size(1);
  for (int64_t r = 0; r < out; ++r) {
    source(r, row.data());
    if (check_finite)
      for (int64_t i = 0; i < in; ++i)
        if (!std::isfinite(rounded_to(row[size_t(i)], storage.dtype()))) return r * in + i;
    const int64_t flat_row = e * rows_per_expert + row0 + r;
    if (storage.dtype() == DType::u8) {
      const int64_t groups = in / int4.group;
      quantize_row_int4(row.data(), in, int4.group, int4.symmetric, storage.data_as<uint8_t>() + flat_row * in,
                        scales.data_as<float>() + flat_row * groups, int4.zeros.data_as<uint8_t>() + flat_row * groups);
    } else if (storage.dtype() == DType::i8) {
      int8_t* dst = storage.data_as<int8_t>() + flat_row * in;
      scales.data_as<float>()[e * scales.size(1) + row0 + r] = quantize_row_dynamic(row.data(), in, dst);
    } else {
      for (int64_t i = 0; i < in; ++i) store_element_f32(storage.data(), storage.dtype(), flat_row * in + i, row[size_t(i)]);
    }
  }
  return -1;
}

// ---- random initialisation ---------------------------------------------------------------------------------------

// A counter-based stream: value i of stream `key` depends only on (seed, key, i), so any thread count and any
// fill order give the same weights.
struct RandomStream {
  uint64_t base;
  float scale;  // values are uniform in [-scale, scale)
  float at(uint64_t i) const { return scale * uniform_pm1(splitmix64(base + i * kStreamStride)); }
};

RandomStream stream(uint64_t seed, uint64_t tensor_id, uint64_t expert, float stddev) {
  // Uniform on [-a, a) has standard deviation a / sqrt(3).
  return RandomStream{splitmix64(seed ^ splitmix64(tensor_id * 1000003ull + expert)), stddev * std::sqrt(3.0f)};
}

RowSource random_rows(RandomStream s, int64_t in) {
  return [s, in](int64_t r, float* row) {
    for (int64_t i = 0; i < in; ++i) row[i] = s.at(uint64_t(r * in + i));
  };
}

struct Shapes {
  int64_t E, H, I, Is;
};
Shapes shapes_of(const MoeConfig& c) {
  return Shapes{c.num_experts, c.hidden_size, c.moe_intermediate_size, c.shared_expert_width()};
}

// The routed experts a load holds: every expert, or `subset` (global ids, in order) — an expert-parallel rank's.
std::vector<int64_t> held_experts(const MoeConfig& c, const std::vector<int64_t>* subset) {
  if (subset) return *subset;
  std::vector<int64_t> all(size_t(c.num_experts));
  for (int64_t e = 0; e < c.num_experts; ++e) all[size_t(e)] = e;
  return all;
}

// Routed-expert tensors hold `held` experts (E without a subset); the router (and smooth scale 1, which routing
// reads) every expert.
// With `fp8`, the expert projections are allocated in the FP8 form (weights.h, fp8_form).
LayerWeights allocate(const MoeConfig& c, int64_t held, bool fp8 = false) {
  Shapes s = shapes_of(c);
  const DType st = fp8 ? DType::u8 : storage_dtype(c);
  LayerWeights w;
  w.router = Tensor::empty(c.dtype, {s.E, s.H});
  if (c.model_type == ModelType::deepseek_v3) w.router_bias = Tensor::zeros(DType::f32, {s.E});
  s.E = held;
  w.w13 = Tensor::empty(st, {s.E, 2 * s.I, s.H});
  w.w2 = Tensor::empty(st, {s.E, s.H, s.I});
  const int64_t G = c.quant_group_size;
  if (fp8) {
    w.w13_scale = Tensor::empty(DType::f32, {s.E, 2 * s.I, fp8_blocks(s.H)});
    w.w2_scale = Tensor::empty(DType::f32, {s.E, s.H, fp8_blocks(s.I)});
  } else if (int4_weights(c)) {
    w.w13_scale = Tensor::empty(DType::f32, {s.E, 2 * s.I, s.H / G});
    w.w13_zero = Tensor::empty(DType::u8, {s.E, 2 * s.I, s.H / G});
    w.w2_scale = Tensor::empty(DType::f32, {s.E, s.H, s.I / G});
    w.w2_zero = Tensor::empty(DType::u8, {s.E, s.H, s.I / G});
  } else if (quantised(c)) {
    w.w13_scale = Tensor::empty(DType::f32, {s.E, 2 * s.I});
    w.w2_scale = Tensor::empty(DType::f32, {s.E, s.H});
    if (c.quant_mode == QuantMode::w8a8c8) w.clip_alpha = Tensor::full(DType::f32, {s.E}, 1.0);
  }
  if (s.Is > 0) {
    w.shared_w13 = Tensor::empty(st, {1, 2 * s.Is, s.H});
    w.shared_w2 = Tensor::empty(st, {1, s.H, s.Is});
    if (fp8) {
      w.shared_w13_scale = Tensor::empty(DType::f32, {1, 2 * s.Is, fp8_blocks(s.H)});
      w.shared_w2_scale = Tensor::empty(DType::f32, {1, s.H, fp8_blocks(s.Is)});
    } else if (int4_weights(c)) {
      w.shared_w13_scale = Tensor::empty(DType::f32, {1, 2 * s.Is, s.H / G});
      w.shared_w13_zero = Tensor::empty(DType::u8, {1, 2 * s.Is, s.H / G});
      w.shared_w2_scale = Tensor::empty(DType::f32, {1, s.H, s.Is / G});
      w.shared_w2_zero = Tensor::empty(DType::u8, {1, s.H, s.Is / G});
    } else if (quantised(c)) {
      w.shared_w13_scale = Tensor::empty(DType::f32, {1, 2 * s.Is});
      w.shared_w2_scale = Tensor::empty(DType::f32, {1, s.H});
    }
    if (c.shared_expert_gated()) w.shared_gate = Tensor::empty(c.dtype, {1, s.H});
  }
  return w;
}

// One unit of weight-filling work: a projection of one expert (or the router, the shared expert, ...).
struct FillTask {
  Tensor storage, scales;
  int64_t e, row0, out, in;
  RowSource source;
  std::string name = {};  // where the values come from (a checkpoint's path and tensor name), for errors
  Int4Target int4 = {};   // w4a16: where the zero points go (set by attach_int4)
  // FP8 kept one byte: fills the storage itself (read_fp8_one_byte), returning what fill_projection returns;
  // `source` then gives the fp32 values, for the error about a non-finite one.
  std::function<int64_t(bool check_finite)> raw = {};
};

// Points every w4a16 task at the zero points of the projection it fills (tasks name their storage, not its zeros).
void attach_int4(const MoeConfig& c, const LayerWeights& w, std::vector<FillTask>& tasks) {
  if (!int4_weights(c)) return;
  const std::pair<const Tensor*, const Tensor*> pairs[] = {
      {&w.w13, &w.w13_zero}, {&w.w2, &w.w2_zero}, {&w.shared_w13, &w.shared_w13_zero}, {&w.shared_w2, &w.shared_w2_zero}};
  for (FillTask& t : tasks)
    for (const auto& [storage, zeros] : pairs)
      if (storage->defined() && t.storage.data() == storage->data())
        t.int4 = Int4Target{*zeros, c.quant_group_size, c.quant_symmetric};
}

// Runs every task; with `check_finite`, refuses (ValueError) the first non-finite value of the first task, in task
// order, that holds one — the same error for any thread count.
void run_tasks(std::vector<FillTask>& tasks, ThreadPool& pool, bool check_finite = false) {
  std::vector<int64_t> bad(tasks.size(), -1);
  pool.parallel_for(int64_t(tasks.size()), [&](int64_t i) {
    const FillTask& t = tasks[size_t(i)];
    bad[size_t(i)] = t.raw ? t.raw(check_finite)
                           : fill_projection(t.storage, t.scales, t.e, t.row0, t.out, t.in, t.source, check_finite, t.int4);
  });
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (bad[i] < 0) continue;
    const FillTask& t = tasks[i];
    std::vector<float> row(size_t(t.in));
    const int64_t r = bad[i] / t.in, c = bad[i] % t.in;
    t.source(r, row.data());
    const DType stored = t.raw ? DType::bf16 : t.storage.dtype();  // FP8 kept one byte: the kernels' bf16 value
    fail_non_finite(t.name, row[size_t(c)], {r, c}, &stored);
  }
}

// Views a 2-D [out, in] tensor as the single "expert" of a [1, out, in] storage for fill_projection.
Tensor as_expert(const Tensor& t2d) { return t2d.reshape({1, t2d.size(0), t2d.size(1)}); }

// ---- checkpoints ---------------------------------------------------------------------------------------------------

std::string shape_words(std::initializer_list<std::pair<const char*, int64_t>> dims) {
  std::string names = "[", values = "[";
  size_t i = 0;
  for (auto [n, v] : dims) {
    if (i++) {
      names += ", ";
      values += ", ";
    }
    names += n;
    values += std::to_string(v);
  }
  return names + "] = " + values + "]";
}

// The checkpoint tensor `name`, checked to be 2-D [out, in] of a float or int8 dtype.
Tensor projection_tensor(const Checkpoint& ck, const std::string& name, int64_t out, int64_t in, const char* out_name,
                         const char* in_name) {
  Tensor t = ck.get(name);
  if (t.dim() != 2 || t.size(0) != out || t.size(1) != in)
    throw ValueError(ck.path() + ": " + name + ": expected shape " + shape_words({{out_name, out}, {in_name, in}}) +
                     ", got " + t.shape().str());
  if (!dtype_is_float(t.dtype()) && t.dtype() != DType::i8)
    throw TypeError(ck.path() + ": " + name + ": expected dtype f32, bf16, f16 or i8, got " +
                    std::string(dtype_name(t.dtype())));
  return t;
}

// Per-output-channel scales of an int8 projection: [out] or [out, 1], f32/bf16/f16, widened to f32.
Tensor scale_tensor(const Checkpoint& ck, const std::string& name, int64_t out) {
  Tensor t = ck.read(name);  // small: a copy read with pread (see checkpoint_rows)
  const bool ok_shape = (t.dim() == 1 && t.size(0) == out) || (t.dim() == 2 && t.size(0) == out && t.size(1) == 1);
  if (!ok_shape)
    throw ValueError(ck.path() + ": " + name + ": expected shape [" + std::to_string(out) + "] or [" +
                     std::to_string(out) + ", 1], got " + t.shape().str());
  if (!dtype_is_float(t.dtype()))
    throw TypeError(ck.path() + ": " + name + ": expected dtype f32, bf16 or f16, got " +
                    std::string(dtype_name(t.dtype())));
  return t;
}

// Rows of checkpoint tensor `name` (2-D [out, in], `t` its view, contiguous as stored), read with pread rather than
// through the file's mapping: a checkpoint that shrinks while it loads is an IoError naming the file, not SIGBUS.
RowSource checkpoint_rows(const Checkpoint& ck, const std::string& name, const Tensor& t) {
  return [&ck, name, dtype = t.dtype(), in = t.size(1)](int64_t r, float* row) {
    const size_t bytes = size_t(in) * dtype_size(dtype);
    thread_local std::vector<std::byte> buf;
    buf.resize(bytes);
    ck.read_bytes(name, uint64_t(r) * bytes, buf.data(), bytes);
    for (int64_t i = 0; i < in; ++i) row[i] = load_element_f32(buf.data(), dtype, i);
  };
}

// Loads one [out, in] projection of a checkpoint into storage rows [row0, row0 + out) of expert e.
// What a projection's load may need besides its tensor: for w4a16, the projection's zero points and the checkpoint's
// GPTQ settings (read once per load); for FP8 tensors, the checkpoint's FP8 settings (read when first needed).
// A GPTQ projection's orders (gptq.h): in_order its input order, out_order the order of its rows (nullptr: the
// identity).
struct Int4Load {
  Tensor zeros;
  const GptqFormat* format = nullptr;
  Fp8Reader* fp8 = nullptr;
  const int32_t* in_order = nullptr;
  const int32_t* out_order = nullptr;
};

void load_projection(const MoeConfig& c, const Checkpoint& ck, const std::string& name, const Tensor& storage,
                     const Tensor& scales, int64_t e, int64_t row0, int64_t out, int64_t in, const char* out_name,
                     const char* in_name, std::vector<FillTask>& tasks, bool check_finite, const Int4Load& int4 = {}) {
  const std::string base = name.substr(0, name.size() - std::string("weight").size());
  if (int4.fp8 != nullptr && is_fp8_tensor(ck, name)) {  // FP8 block-scaled
    const Fp8Projection fp8 = fp8_projection(ck, name, out, in, out_name, in_name, int4.fp8->settings(), check_finite);
    FillTask t{storage, scales, e, row0, out, in, fp8_rows(fp8), ck.path() + ": " + name};
    if (storage.dtype() == DType::u8) {  // kept one byte (fp8_form): bytes and scales copied as they are
      const int64_t row = e * storage.size(1) + row0;
      uint8_t* q = storage.data_as<uint8_t>() + row * in;
      float* s = scales.data_as<float>() + row * scales.size(2);
      t.raw = [fp8, q, s](bool check) { return read_fp8_one_byte(fp8, q, s, check); };
    }  // else dequantised in fp32, then as floats
    tasks.push_back(std::move(t));
    return;
  }
  if (int4_weights(c) && has_gptq_projection(ck, base)) {  // a GPTQ or AWQ checkpoint: its int4 values as they are
    const int64_t G = c.quant_group_size, row = e * storage.size(1) + row0;
    read_gptq_projection(ck, base, *int4.format, G, out, in, out_name, in_name, storage.data_as<uint8_t>() + row * in,
                         scales.data_as<float>() + row * (in / G), int4.zeros.data_as<uint8_t>() + row * (in / G),
                         check_finite, int4.in_order, int4.out_order);
    return;
  }
  if (int4_weights(c) && int4.format != nullptr && !int4.format->source.empty())  // no float weight quantised silently
    throw IoError(ck.path() + ": " + base + "qweight: expected a tensor of this checkpoint (" + int4.format->source +
                  (int4.format->awq ? " declares AWQ" : " declares GPTQ") + " int4 weights), got none" +
                  (ck.has(name) ? " (only the float " + name + ")" : ""));
  Tensor t = projection_tensor(ck, name, out, in, out_name, in_name);
  if (t.dtype() == DType::i8) {
    if (!int8_weights(c))
      throw ValueError(ck.path() + ": " + name + ": expected a float tensor for quant_mode " +
                       std::string(quant_mode_name(c.quant_mode)) + " (int8 weights need quant_mode w8a8 or w8a8c8), got i8");
    // int8 rows are copied as they are; their scales come from the checkpoint.
    const std::string scale_name = name.substr(0, name.size() - std::string("weight").size()) + "weight_scale";
    Tensor s = scale_tensor(ck, scale_name, out);
    if (check_finite)
      check_finite_values(
          ck.path() + ": " + scale_name, out,
          [&](int64_t r) { return load_element_f32(s.data(), s.dtype(), r * s.stride(0)); },
          [&](int64_t r) { return unravel(s, r); });
    const int64_t rows_per_expert = storage.size(1);
    ck.read_bytes(name, 0, storage.data_as<int8_t>() + (e * rows_per_expert + row0) * in, size_t(out * in));
    for (int64_t r = 0; r < out; ++r)
      scales.data_as<float>()[e * scales.size(1) + row0 + r] = load_element_f32(s.data(), s.dtype(), r * s.stride(0));
    return;
  }
  tasks.push_back(FillTask{storage, scales, e, row0, out, in, checkpoint_rows(ck, name, t), ck.path() + ": " + name});
}

// Act order of one expert's GPTQ projections (gptq.h, gptq_input_order; empty orders: the identity). Gate and up
// read the same input, x, and GPTQ gives them one g_idx: required, so that one gather of x feeds both (`input`).
// Down's input order, the SwiGLU channels' (`inner`), needs no gather: gate's and up's rows are read in it, so that
// SwiGLU's output already comes out in the order of down's columns.
struct GptqOrders {
  std::vector<int32_t> input, inner;
};

GptqOrders gptq_orders(const MoeConfig& c, const Checkpoint& ck, const std::string& gate, const std::string& up,
                       const std::string& down, int64_t H, int64_t W, const char* w_name) {
  GptqOrders o;
  if (!int4_weights(c)) return o;
  const int64_t G = c.quant_group_size;
  const bool g = has_gptq_projection(ck, gate), u = has_gptq_projection(ck, up);
  if (g) o.input = gptq_input_order(ck, gate, G, H, "H");
  if (u && !g) o.input = gptq_input_order(ck, up, G, H, "H");
  if (g && u && gptq_input_order(ck, up, G, H, "H") != o.input) {
    // The first channel whose group differs (an absent g_idx is i / G; both were checked to be i32 [H]).
    auto groups = [&](const std::string& base) {
      std::vector<int64_t> v(static_cast<size_t>(H));
      const Tensor t = ck.has(base + "g_idx") ? ck.read(base + "g_idx").contiguous() : Tensor{};
      for (int64_t i = 0; i < H; ++i) v[size_t(i)] = t.defined() ? t.data_as<const int32_t>()[i] : i / G;
      return v;
    };
    const std::vector<int64_t> a = groups(gate), b = groups(up);
    int64_t i = 0;
    while (i + 1 < H && a[size_t(i)] == b[size_t(i)]) ++i;
    throw ValueError(ck.file_of(up + "qweight") + ": " + gate + "g_idx and " + up +
                     "g_idx: expected the same groups (gate and up read the same input, gathered once for both in act "
                     "order), got g_idx[" + std::to_string(i) + "] = " + std::to_string(a[size_t(i)]) + " and " +
                     std::to_string(b[size_t(i)]));
  }
  if (has_gptq_projection(ck, down)) o.inner = gptq_input_order(ck, down, G, W, w_name);
  // Both orders reorder gate's and up's GPTQ tensors as they are read: a float one (quantised on load, in the
  // checkpoint's order) would not follow them.
  if ((!o.input.empty() || !o.inner.empty()) && !(g && u)) {
    const std::string& reason = !o.input.empty() ? (g ? gate : up) : down;
    throw ValueError(ck.file_of(reason + "g_idx") + ": " + reason +
                     "g_idx: expected the g_idx i / G (act order needs gate and up both as GPTQ tensors), got a "
                     "permuted g_idx with " + (g ? up : gate) + "weight a float tensor");
  }
  return o;
}

// The [n, H] i32 input orders of `orders` (an empty one: the identity); undefined when every one is the identity.
Tensor input_orders(const std::vector<std::vector<int32_t>>& orders, int64_t H) {
  bool any = false;
  for (const auto& o : orders) any = any || !o.empty();
  if (!any) return Tensor{};
  Tensor t = Tensor::empty(DType::i32, {int64_t(orders.size()), H});
  for (size_t e = 0; e < orders.size(); ++e)
    for (int64_t j = 0; j < H; ++j)
      t.data_as<int32_t>()[int64_t(e) * H + j] = orders[e].empty() ? int32_t(j) : orders[e][size_t(j)];
  return t;
}

// An optional per-expert vector [n] of the checkpoint, widened into row e of `dst` ([E, n] f32).
bool load_vector(const Checkpoint& ck, const std::string& name, int64_t n, const Tensor& dst, int64_t e,
                 bool check_finite) {
  if (!ck.has(name)) return false;
  Tensor t = ck.read(name);
  if (t.numel() != n || !dtype_is_float(t.dtype()))
    throw ValueError(ck.path() + ": " + name + ": expected a float tensor of " + std::to_string(n) +
                     " elements, got " + t.describe());
  const Tensor flat = t.contiguous();
  for (int64_t i = 0; i < n; ++i)
    dst.data_as<float>()[e * n + i] = load_element_f32(flat.data(), flat.dtype(), i);
  if (check_finite)
    check_finite_values(
        ck.path() + ": " + name, n, [&](int64_t i) { return dst.data_as<float>()[e * n + i]; },
        [&](int64_t i) { return unravel(t, i); });
  return true;
}

}  // namespace

std::string moe_prefix(const MoeConfig& c, int64_t layer_index) {
  return "model.layers." + std::to_string(layer_index) +
         (c.model_type == ModelType::mixtral ? ".block_sparse_moe" : ".mlp");
}

ProjectionNames projection_names(const MoeConfig& c) {
  if (c.model_type == ModelType::mixtral) return ProjectionNames{"w1", "w3", "w2"};
  return ProjectionNames{"gate_proj", "up_proj", "down_proj"};
}

static std::string shared_prefix(const MoeConfig& c, const std::string& prefix) {
  return prefix + (c.model_type == ModelType::qwen2_moe ? ".shared_expert" : ".shared_experts");
}

bool fp8_form(const LayerWeights& w) { return w.w13.defined() && w.w13.dtype() == DType::u8 && !w.w13_zero.defined(); }

void validate_weights(const MoeConfig& c, const LayerWeights& w, bool allow_fp8) {
  const Shapes s = shapes_of(c);
  const bool fp8 = allow_fp8 && fp8_form(w) && c.dtype == DType::bf16 && !quantised(c);
  const DType st = fp8 ? DType::u8 : storage_dtype(c);
  auto need = [&](const char* name, const Tensor& t, DType dt, const Shape& shape) {
    check::defined(kOp, name, t);
    check::dtype_in(kOp, name, t, {dt});
    check::shape_is(kOp, name, t, shape);
  };
  auto absent = [&](const char* name, const Tensor& t, const char* why) {
    if (t.defined()) check::fail_value(kOp, name, std::string("none (") + why + ")", t.describe());
  };
  need("router", w.router, c.dtype, {s.E, s.H});
  if (c.model_type == ModelType::deepseek_v3) need("router_bias", w.router_bias, DType::f32, {s.E});
  else absent("router_bias", w.router_bias, "only deepseek_v3 has a correction bias");
  need("w13", w.w13, st, {s.E, 2 * s.I, s.H});
  need("w2", w.w2, st, {s.E, s.H, s.I});
  const int64_t G = c.quant_group_size;
  if (fp8) {
    need("w13_scale", w.w13_scale, DType::f32, {s.E, 2 * s.I, fp8_blocks(s.H)});
    need("w2_scale", w.w2_scale, DType::f32, {s.E, s.H, fp8_blocks(s.I)});
  } else if (int4_weights(c)) {
    need("w13_scale", w.w13_scale, DType::f32, {s.E, 2 * s.I, s.H / G});
    need("w13_zero", w.w13_zero, DType::u8, {s.E, 2 * s.I, s.H / G});
    need("w2_scale", w.w2_scale, DType::f32, {s.E, s.H, s.I / G});
    need("w2_zero", w.w2_zero, DType::u8, {s.E, s.H, s.I / G});
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"smooth_scale1", &w.smooth_scale1},
                                  {"smooth_scale2", &w.smooth_scale2}, {"clip_alpha", &w.clip_alpha}})
      if (c.quant_mode == QuantMode::w4a16 || t == &w.clip_alpha)
        absent(name, *t, c.quant_mode == QuantMode::w4a16 ? "w4a16 keeps its activations in the model dtype"
                                                         : "w4a8 does not clip");
    if (c.quant_mode == QuantMode::w4a8) {  // optional smooth scales, as w8a8's
      if (w.smooth_scale1.defined()) need("smooth_scale1", w.smooth_scale1, DType::f32, {s.E, s.H});
      if (w.smooth_scale2.defined()) need("smooth_scale2", w.smooth_scale2, DType::f32, {s.E, s.I});
    }
  } else if (quantised(c)) {
    need("w13_scale", w.w13_scale, DType::f32, {s.E, 2 * s.I});
    need("w2_scale", w.w2_scale, DType::f32, {s.E, s.H});
    if (w.smooth_scale1.defined()) need("smooth_scale1", w.smooth_scale1, DType::f32, {s.E, s.H});
    if (c.quant_mode == QuantMode::w8a8c8) {
      need("clip_alpha", w.clip_alpha, DType::f32, {s.E});
      absent("smooth_scale2", w.smooth_scale2, "w8a8c8 has no second smooth scale");
    } else if (w.smooth_scale2.defined()) {
      need("smooth_scale2", w.smooth_scale2, DType::f32, {s.E, s.I});
    }
  }
  if (s.Is > 0) {
    need("shared_w13", w.shared_w13, st, {1, 2 * s.Is, s.H});
    need("shared_w2", w.shared_w2, st, {1, s.H, s.Is});
    if (fp8) {
      need("shared_w13_scale", w.shared_w13_scale, DType::f32, {1, 2 * s.Is, fp8_blocks(s.H)});
      need("shared_w2_scale", w.shared_w2_scale, DType::f32, {1, s.H, fp8_blocks(s.Is)});
    } else if (int4_weights(c)) {
      need("shared_w13_scale", w.shared_w13_scale, DType::f32, {1, 2 * s.Is, s.H / G});
      need("shared_w13_zero", w.shared_w13_zero, DType::u8, {1, 2 * s.Is, s.H / G});
      need("shared_w2_scale", w.shared_w2_scale, DType::f32, {1, s.H, s.Is / G});
      need("shared_w2_zero", w.shared_w2_zero, DType::u8, {1, s.H, s.Is / G});
    } else if (quantised(c)) {
      need("shared_w13_scale", w.shared_w13_scale, DType::f32, {1, 2 * s.Is});
      need("shared_w2_scale", w.shared_w2_scale, DType::f32, {1, s.H});
    }
    if (c.shared_expert_gated()) need("shared_gate", w.shared_gate, c.dtype, {1, s.H});
  } else {
    absent("shared_w13", w.shared_w13, "the config has no shared expert");
  }
  // Act order: an input order per expert (layer.h), int4 chains only.
  using Order = std::tuple<const char*, const Tensor*, int64_t>;  // name, tensor, rows
  for (const auto& [name, t, experts] :
       {Order{"w13_perm", &w.w13_perm, s.E}, Order{"shared_w13_perm", &w.shared_w13_perm, 1}}) {
    if (!t->defined()) continue;
    if (!int4_weights(c)) absent(name, *t, "an input order belongs to int4 weights (w4a16, w4a8)");
    if (experts == 1 && s.Is == 0) absent(name, *t, "the config has no shared expert");
    need(name, *t, DType::i32, {experts, s.H});
    const Tensor p = t->contiguous();
    std::vector<uint8_t> seen(size_t(s.H));
    for (int64_t e = 0; e < experts; ++e) {
      std::fill(seen.begin(), seen.end(), uint8_t{0});
      const int32_t* row = p.data_as<const int32_t>() + e * s.H;
      for (int64_t j = 0; j < s.H; ++j) {
        const int32_t v = row[j];
        const bool ok = v >= 0 && v < s.H && !seen[size_t(v)] && (j % G == 0 || v > row[j - 1]);
        if (!ok)
          check::fail_value(kOp, name,
                            "each row a permutation of 0.." + std::to_string(s.H - 1) +
                                ", ascending within each group of " + std::to_string(G) + " columns",
                            "[" + std::to_string(e) + ", " + std::to_string(j) + "] = " + std::to_string(v));
        seen[size_t(v)] = 1;
      }
    }
  }
}

LayerWeights random_weights(const MoeConfig& c, uint64_t seed, ThreadPool& pool, const std::vector<int64_t>* subset) {
  const Shapes s = shapes_of(c);
  const std::vector<int64_t> held = held_experts(c, subset);
  LayerWeights w = allocate(c, int64_t(held.size()));
  const float sd_h = 1.0f / std::sqrt(float(s.H)), sd_i = 1.0f / std::sqrt(float(s.I));
  // For the quantised chains the float values are rounded to the model dtype first, so a quantised random layer
  // is exactly "a model-dtype checkpoint, quantised" (what `moefuse quantize` makes of one).
  auto src = [&](uint64_t id, uint64_t e, float sd, int64_t in) {
    RowSource raw = random_rows(stream(seed, id, e, sd), in);
    if (!quantised(c)) return raw;
    const DType model = c.dtype;
    return RowSource([raw, model, in](int64_t r, float* row) {
      raw(r, row);
      for (int64_t i = 0; i < in; ++i) row[i] = rounded_to(row[i], model);
    });
  };
  std::vector<FillTask> tasks;
  tasks.push_back(FillTask{as_expert(w.router), Tensor{}, 0, 0, s.E, s.H, random_rows(stream(seed, 1, 0, sd_h), s.H)});
  for (int64_t li = 0; li < int64_t(held.size()); ++li) {
    const uint64_t e = uint64_t(held[size_t(li)]);  // the stream of global expert e, into slot li
    tasks.push_back(FillTask{w.w13, w.w13_scale, li, 0, s.I, s.H, src(2, e, sd_h, s.H)});
    tasks.push_back(FillTask{w.w13, w.w13_scale, li, s.I, s.I, s.H, src(3, e, sd_h, s.H)});
    tasks.push_back(FillTask{w.w2, w.w2_scale, li, 0, s.H, s.I, src(4, e, sd_i, s.I)});
  }
  if (s.Is > 0) {
    const float sd_s = 1.0f / std::sqrt(float(s.Is));
    tasks.push_back(FillTask{w.shared_w13, w.shared_w13_scale, 0, 0, s.Is, s.H, src(5, 0, sd_h, s.H)});
    tasks.push_back(FillTask{w.shared_w13, w.shared_w13_scale, 0, s.Is, s.Is, s.H, src(6, 0, sd_h, s.H)});
    tasks.push_back(FillTask{w.shared_w2, w.shared_w2_scale, 0, 0, s.H, s.Is, src(7, 0, sd_s, s.Is)});
    if (w.shared_gate.defined())
      tasks.push_back(FillTask{as_expert(w.shared_gate), Tensor{}, 0, 0, 1, s.H, random_rows(stream(seed, 8, 0, sd_h), s.H)});
  }
  attach_int4(c, w, tasks);
  run_tasks(tasks, pool);
  if (w.router_bias.defined()) {
    RandomStream b = stream(seed, 9, 0, 0.05f / std::sqrt(3.0f));
    for (int64_t e = 0; e < s.E; ++e) w.router_bias.data_as<float>()[e] = b.at(uint64_t(e));
  }
  return w;
}

bool keeps_fp8_one_byte(const MoeConfig& c, const Checkpoint& ck, int64_t layer_index,
                        const std::vector<int64_t>* subset) {
  Fp8Reader fp8(ck);
  return keeps_fp8_one_byte(c, ck, moe_prefix(c, layer_index), held_experts(c, subset), fp8);
}

bool keeps_fp8_one_byte(const MoeConfig& c, const Checkpoint& ck, const std::string& prefix,
                        const std::vector<int64_t>& held, Fp8Reader& fp8) {
  const ProjectionNames pn = projection_names(c);
  std::vector<std::string> names;
  for (int64_t e : held)
    for (const char* proj : {pn.gate, pn.up, pn.down})
      names.push_back(prefix + ".experts." + std::to_string(e) + "." + proj + ".weight");
  if (c.shared_expert_width() > 0)
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
      names.push_back(shared_prefix(c, prefix) + "." + proj + ".weight");
  if (names.empty() || !is_fp8_tensor(ck, names.front())) return false;
  for (const std::string& n : names)
    if (!is_fp8_tensor(ck, n)) return false;
  return fp8_held_one_byte(c, fp8.settings());
}

LayerWeights random_fp8_weights(const MoeConfig& c, uint64_t seed, ThreadPool& pool) {
  if (c.dtype != DType::bf16 || quantised(c))
    throw ValueError(std::string(kOp) + ": FP8 weights: expected a bf16 float config (dtype bf16, quant_mode none), "
                     "got dtype " + std::string(dtype_name(c.dtype)) + ", quant_mode " +
                     std::string(quant_mode_name(c.quant_mode)));
  LayerWeights f = random_weights(c, seed, pool);
  LayerWeights w = allocate(c, c.num_experts, true);
  w.router = f.router;
  w.router_bias = f.router_bias;
  w.shared_gate = f.shared_gate;
  // Projection `from` ([E, out, in]) into its FP8 form: parts of `rows` rows (gate and up of w13 apart), each
  // quantised in blocks counted from its own first row.
  auto convert = [&](Tensor& from, const Tensor& q, const Tensor& scales, int64_t rows) {
    const int64_t E = from.size(0), out = from.size(1), in = from.size(2), kb = fp8_blocks(in);
    const int64_t parts = out / rows, es = int64_t(from.element_size());
    pool.parallel_for(E * parts, [&](int64_t i) {
      const int64_t row = (i / parts) * out + (i % parts) * rows;
      quantise_fp8_blocks(static_cast<const std::byte*>(from.data()) + row * in * es, from.dtype(), rows, in,
                          q.data_as<uint8_t>() + row * in, scales.data_as<float>() + row * kb);
    });
    from = Tensor{};
  };
  const Shapes s = shapes_of(c);
  convert(f.w13, w.w13, w.w13_scale, s.I);
  convert(f.w2, w.w2, w.w2_scale, s.H);
  if (s.Is > 0) {
    convert(f.shared_w13, w.shared_w13, w.shared_w13_scale, s.Is);
    convert(f.shared_w2, w.shared_w2, w.shared_w2_scale, s.H);
  }
  return w;
}

LayerWeights checkpoint_weights(const MoeConfig& c, const Checkpoint& ck, int64_t layer_index, ThreadPool& pool,
                                bool allow_non_finite, const std::vector<int64_t>* subset) {
  const bool check = !allow_non_finite;
  if (layer_index < 0)
    throw ValueError("MoeLayer::from_checkpoint: layer_index: expected >= 0, got " + std::to_string(layer_index));
  const Shapes s = shapes_of(c);
  const std::string p = moe_prefix(c, layer_index);
  const ProjectionNames pn = projection_names(c);
  const std::vector<int64_t> held = held_experts(c, subset);
  const int64_t n_held = int64_t(held.size());
  Fp8Reader fp8(ck);
  LayerWeights w = allocate(c, n_held, keeps_fp8_one_byte(c, ck, p, held, fp8));
  std::vector<FillTask> tasks;
  GptqFormat gptq;
  if (int4_weights(c)) gptq = read_gptq_format(ck, c.quant_group_size);
  auto i4 = [&](const Tensor& zeros, const std::vector<int32_t>& in_order = {},
                const std::vector<int32_t>& out_order = {}) {
    return Int4Load{zeros, &gptq, &fp8, in_order.empty() ? nullptr : in_order.data(),
                    out_order.empty() ? nullptr : out_order.data()};
  };
  // The router and the shared gate stay float (model dtype) in every chain.
  Tensor router = projection_tensor(ck, p + ".gate.weight", s.E, s.H, "E", "H");
  if (router.dtype() == DType::i8)
    throw TypeError(ck.path() + ": " + p + ".gate.weight: expected a float router weight, got i8");
  tasks.push_back(FillTask{as_expert(w.router), Tensor{}, 0, 0, s.E, s.H, checkpoint_rows(ck, p + ".gate.weight", router),
                           ck.path() + ": " + p + ".gate.weight"});
  std::vector<std::vector<int32_t>> w13_orders(static_cast<size_t>(n_held));  // act order: each expert's input order
  for (int64_t li = 0; li < n_held; ++li) {  // global expert held[li] into slot li: only its tensors are read
    const std::string ep = p + ".experts." + std::to_string(held[size_t(li)]) + ".";
    GptqOrders o = gptq_orders(c, ck, ep + pn.gate + ".", ep + pn.up + ".", ep + pn.down + ".", s.H, s.I, "I");
    load_projection(c, ck, ep + pn.gate + ".weight", w.w13, w.w13_scale, li, 0, s.I, s.H, "I", "H", tasks, check,
                    i4(w.w13_zero, o.input, o.inner));
    load_projection(c, ck, ep + pn.up + ".weight", w.w13, w.w13_scale, li, s.I, s.I, s.H, "I", "H", tasks, check,
                    i4(w.w13_zero, o.input, o.inner));
    load_projection(c, ck, ep + pn.down + ".weight", w.w2, w.w2_scale, li, 0, s.H, s.I, "H", "I", tasks, check,
                    i4(w.w2_zero, o.inner));
    w13_orders[size_t(li)] = std::move(o.input);
  }
  w.w13_perm = input_orders(w13_orders, s.H);
  if (int8_weights(c)) {
    // Optional smooth scales: present for every expert or for none.
    const std::string first1 = p + ".experts.0." + pn.gate + ".smooth_scale";
    if (ck.has(first1)) {
      w.smooth_scale1 = Tensor::empty(DType::f32, {s.E, s.H});
      for (int64_t e = 0; e < s.E; ++e)
        if (!load_vector(ck, p + ".experts." + std::to_string(e) + "." + pn.gate + ".smooth_scale", s.H,
                         w.smooth_scale1, e, check))
          throw IoError(ck.path() + ": " + p + ".experts." + std::to_string(e) + "." + pn.gate +
                        ".smooth_scale: expected a tensor of this checkpoint (expert 0 has one), got none");
    }
    // Smooth scale 2 is per held expert: present for the first one, or for none.
    const std::string first2 =
        p + ".experts." + std::to_string(n_held > 0 ? held[0] : 0) + "." + pn.down + ".smooth_scale";
    if (c.quant_mode == QuantMode::w8a8 && n_held > 0 && ck.has(first2)) {
      w.smooth_scale2 = Tensor::empty(DType::f32, {n_held, s.I});
      for (int64_t li = 0; li < n_held; ++li) {
        const std::string e = std::to_string(held[size_t(li)]);
        if (!load_vector(ck, p + ".experts." + e + "." + pn.down + ".smooth_scale", s.I, w.smooth_scale2, li, check))
          throw IoError(ck.path() + ": " + p + ".experts." + e + "." + pn.down +
                        ".smooth_scale: expected a tensor of this checkpoint (expert " + std::to_string(held[0]) +
                        " has one), got none");
      }
    }
    if (c.quant_mode == QuantMode::w8a8c8)
      for (int64_t li = 0; li < n_held; ++li)
        load_vector(ck, p + ".experts." + std::to_string(held[size_t(li)]) + "." + pn.down + ".clip_alpha", 1,
                    w.clip_alpha, li, check);
  }
  if (s.Is > 0) {
    const std::string sp = shared_prefix(c, p) + ".";
    GptqOrders o = gptq_orders(c, ck, sp + "gate_proj.", sp + "up_proj.", sp + "down_proj.", s.H, s.Is, "Is");
    load_projection(c, ck, sp + "gate_proj.weight", w.shared_w13, w.shared_w13_scale, 0, 0, s.Is, s.H, "Is", "H",
                    tasks, check, i4(w.shared_w13_zero, o.input, o.inner));
    load_projection(c, ck, sp + "up_proj.weight", w.shared_w13, w.shared_w13_scale, 0, s.Is, s.Is, s.H, "Is", "H",
                    tasks, check, i4(w.shared_w13_zero, o.input, o.inner));
    load_projection(c, ck, sp + "down_proj.weight", w.shared_w2, w.shared_w2_scale, 0, 0, s.H, s.Is, "H", "Is",
                    tasks, check, i4(w.shared_w2_zero, o.inner));
    w.shared_w13_perm = input_orders({std::move(o.input)}, s.H);
    if (w.shared_gate.defined()) {
      Tensor g = projection_tensor(ck, p + ".shared_expert_gate.weight", 1, s.H, "1", "H");
      tasks.push_back(FillTask{as_expert(w.shared_gate), Tensor{}, 0, 0, 1, s.H,
                               checkpoint_rows(ck, p + ".shared_expert_gate.weight", g),
                               ck.path() + ": " + p + ".shared_expert_gate.weight"});
    }
  }
  if (w.router_bias.defined()) {
    const std::string name = p + ".gate.e_score_correction_bias";
    Tensor b = ck.read(name);
    if (b.numel() != s.E || b.dim() != 1 || !dtype_is_float(b.dtype()))
      throw ValueError(ck.path() + ": " + name + ": expected a float tensor of shape [" + std::to_string(s.E) +
                       "], got " + b.describe());
    for (int64_t e = 0; e < s.E; ++e) w.router_bias.data_as<float>()[e] = load_element_f32(b.data(), b.dtype(), e * b.stride(0));
    if (check)
      check_finite_values(
          ck.path() + ": " + name, s.E, [&](int64_t e) { return w.router_bias.data_as<float>()[e]; },
          [](int64_t e) { return std::vector<int64_t>{e}; });
  }
  attach_int4(c, w, tasks);
  run_tasks(tasks, pool, check);
  return w;
}

NamedTensors checkpoint_tensors(const MoeConfig& c, const LayerWeights& w, int64_t layer_index) {
  const Shapes s = shapes_of(c);
  const std::string p = moe_prefix(c, layer_index);
  const ProjectionNames pn = projection_names(c);
  NamedTensors out;
  out.emplace_back(p + ".gate.weight", w.router);
  if (w.router_bias.defined()) out.emplace_back(p + ".gate.e_score_correction_bias", w.router_bias);
  // A projection is rows [row0, row0 + n) of an expert's storage; its scales the same entries of the scale tensor.
  auto add = [&](const std::string& name, const Tensor& storage, const Tensor& scales, int64_t e, int64_t row0,
                 int64_t n) {
    Tensor rows = storage.narrow(0, e, 1).narrow(1, row0, n).reshape({n, storage.size(2)});
    if (int4_weights(c)) {  // GPTQ's format (gptq.h)
      const Tensor& zeros = &storage == &w.w13 ? w.w13_zero : &storage == &w.w2 ? w.w2_zero
                            : &storage == &w.shared_w13 ? w.shared_w13_zero : w.shared_w2_zero;
      const int64_t groups = scales.size(2);
      // Act order: w13's columns in the expert's input order (layer.h); w2's are always the checkpoint's.
      const Tensor& perm = &storage == &w.w13 ? w.w13_perm : &storage == &w.shared_w13 ? w.shared_w13_perm : Tensor{};
      const Tensor order = perm.defined() ? perm.contiguous() : Tensor{};
      append_gptq_tensors(name + ".", rows, scales.narrow(0, e, 1).narrow(1, row0, n).reshape({n, groups}),
                          zeros.narrow(0, e, 1).narrow(1, row0, n).reshape({n, groups}), out,
                          order.defined() ? order.data_as<const int32_t>() + e * storage.size(2) : nullptr);
      return;
    }
    out.emplace_back(name + ".weight", rows);
    if (scales.defined()) out.emplace_back(name + ".weight_scale", scales.narrow(0, e, 1).narrow(1, row0, n).reshape({n}));
  };
  for (int64_t e = 0; e < s.E; ++e) {
    const std::string ep = p + ".experts." + std::to_string(e) + ".";
    add(ep + pn.gate, w.w13, w.w13_scale, e, 0, s.I);
    add(ep + pn.up, w.w13, w.w13_scale, e, s.I, s.I);
    add(ep + pn.down, w.w2, w.w2_scale, e, 0, s.H);
    if (w.smooth_scale1.defined()) out.emplace_back(ep + pn.gate + ".smooth_scale", w.smooth_scale1.narrow(0, e, 1).reshape({s.H}));
    if (w.smooth_scale2.defined()) out.emplace_back(ep + pn.down + ".smooth_scale", w.smooth_scale2.narrow(0, e, 1).reshape({s.I}));
    if (w.clip_alpha.defined()) out.emplace_back(ep + pn.down + ".clip_alpha", w.clip_alpha.narrow(0, e, 1));
  }
  if (s.Is > 0) {
    const std::string sp = shared_prefix(c, p) + ".";
    add(sp + "gate_proj", w.shared_w13, w.shared_w13_scale, 0, 0, s.Is);
    add(sp + "up_proj", w.shared_w13, w.shared_w13_scale, 0, s.Is, s.Is);
    add(sp + "down_proj", w.shared_w2, w.shared_w2_scale, 0, 0, s.H);
    if (w.shared_gate.defined()) out.emplace_back(p + ".shared_expert_gate.weight", w.shared_gate);
  }
  return out;
}

}  // namespace moefuse::layer
