"""An independent numpy oracle of the MoE layer (docs/layer.md §1): a loop over tokens and, per token, over its
chosen experts, the way Hugging Face's MoE blocks compute, with the documented rounding points, in float32 one
operation at a time. Router logits, softmax / sigmoid scores, group-limited top-k, renormalisation, the experts'
MLPs and their int8 (de)quantisation, the shared expert and the combine are all written here; it never calls
moefuse.

Two things numpy lacks are built from exact pieces: the float32 fused multiply-adds of the documented dot products
(fma32.py: one fma per term in order for f32 / f16 weights; for bf16 weights pairs of terms, the odd one first, each
an fma with DAZ/FTZ) and C's expf (mf_testutil.expf, through ctypes, as the operator tests do)."""

import numpy as np

from fma32 import dot, is_bf16
from mf_testutil import expf, round_to

F32 = np.float32


def matvec(w, v, bf16):
    """y[o] = sum_i w[o, i] * v[i] (w [out, in], v [in], float32), in the order of the weights' dtype (bf16 or not)."""
    return dot(np.asarray(v, F32)[None, :], np.asarray(w, F32).T, bf16)[0]


def silu(a):
    a = np.asarray(a, F32)
    return a / (F32(1) + expf(-a))


def sigmoid(a):
    a = np.asarray(a, F32)
    return F32(1) / (F32(1) + expf(-a))


def quantize(v):
    """Dynamic symmetric int8: s = max|v| / 127, q = round-half-even(v / s) in [-127, 127]; zeros when s = 0."""
    v = np.asarray(v, F32)
    s = F32(np.max(np.abs(v)) / F32(127))
    if s == 0:
        return np.zeros(v.shape, np.int64), s
    return np.clip(np.rint(v / s), -127, 127).astype(np.int64), s


def top_k(key, allowed, k):
    """Indices of the allowed entries, larger key first, ties to the lower index; the first k."""
    idx = np.flatnonzero(allowed)
    order = sorted(range(len(idx)), key=lambda j: (-float(key[idx[j]]), int(idx[j])))
    return [int(idx[j]) for j in order[:k]]


def expert_mlp(m, w13, w2, s13, s2, x, smooth1=None, smooth2=None, alpha=F32(1), bf16=False):
    """One expert's MLP on one token (x: model-dtype values as float32). w13 [2W, H] (gate rows, then up rows), w2
    [H, W]; s13 / s2 their per-channel scales (quantised chains); bf16: the float chain's weights are bf16."""
    md, quant = m["dtype"], m["quant_mode"]
    W = w13.shape[0] // 2
    if quant == "none":
        h = round_to(md, matvec(w13, x, bf16))
        a = round_to(md, silu(h[:W]) * h[W:])
        return round_to(md, matvec(w2, a, bf16))
    xs = x if smooth1 is None else x * smooth1
    xq, x_scale = quantize(xs)
    acc1 = (w13.astype(np.int64) @ xq).astype(F32)  # exact int32 sums, then converted (RNE)
    if quant == "w8a8":
        v = (acc1 * s13) * x_scale
        o = silu(v[:W]) * v[W:]
        if smooth2 is not None:
            o = o * smooth2
    else:  # w8a8c8: dequantised to bf16, SwiGLU clipped to +-alpha * max|.|
        h = round_to("bf16", (acc1 * s13) * x_scale)
        o = silu(h[:W]) * h[W:]
        limit = F32(alpha * np.max(np.abs(o)))
        o = np.clip(o, -limit, limit)
    aq, a_scale = quantize(o)
    acc2 = (w2.astype(np.int64) @ aq).astype(F32)
    return round_to(md, (acc2 * s2) * a_scale)


def route(m, w, x, bf16):
    """The top-k experts of one token in slot order and their combine weights (model-dtype values as float32).
    bf16: the names of the weights stored in bf16."""
    E, K = m["num_experts"], m["num_experts_per_tok"]
    md = m["dtype"]
    logits_dtype = md if m["router_logits_dtype"] == "model" else "f32"
    logits = round_to(logits_dtype, matvec(w["router"], x, "router" in bf16))
    if m["scoring_func"] == "softmax":
        e = expf(logits - np.max(logits))
        total = np.add.accumulate(e, dtype=F32)[-1]  # in expert order
        p = e * (F32(1) / total)
    else:
        p = sigmoid(logits)
    choice = p + w["router_bias"] if "router_bias" in w else p
    G = m["n_group"]
    g = E // G
    group_score = np.zeros(G, F32)
    for j in range(G):
        members = np.sort(choice[j * g:(j + 1) * g])[::-1]
        group_score[j] = members[0] + members[1] if m["scoring_func"] == "sigmoid" else members[0]
    allowed = np.zeros(E, bool)
    for j in top_k(group_score, np.ones(G, bool), m["topk_group"]):
        allowed[j * g:(j + 1) * g] = True
    experts = top_k(choice, allowed, K)
    weights = p[experts]
    total = np.add.accumulate(weights, dtype=F32)[-1]
    if m["scoring_func"] == "sigmoid" or m["norm_topk_prob"]:
        weights = weights / (total + F32(1e-20))
    weights = weights * F32(m["routed_scaling_factor"])
    return experts, round_to(md, round_to(logits_dtype, weights))


def layer_forward(config, weights, x):
    """The layer's output [T, H] (as float32 values of the model dtype) and the top-k indices [T, K] for x [T, H].
    config: the layer's config dict; weights: layer.weights() (any dtypes, read as float32 / int8; which are bf16
    decides the order of their dot products)."""
    m = config["model_config"]
    md = m["dtype"]
    bf16 = {k for k, v in weights.items() if is_bf16(v)}
    w = {k: (v if v.dtype == np.int8 else np.asarray(v, F32)) for k, v in weights.items()}
    x = np.asarray(x, F32)
    T, H = x.shape
    out = np.zeros((T, H), F32)
    topk = np.zeros((T, m["num_experts_per_tok"]), np.int32)
    for t in range(T):
        xt = x[t]
        experts, wk = route(m, w, xt, bf16)
        topk[t] = experts
        acc = None
        if "shared_w13" in w:
            acc = expert_mlp(m, w["shared_w13"][0], w["shared_w2"][0], w.get("shared_w13_scale", [None])[0],
                             w.get("shared_w2_scale", [None])[0], xt, bf16="shared_w13" in bf16)
            if "shared_gate" in w:
                acc = round_to(md, sigmoid(matvec(w["shared_gate"], xt, "shared_gate" in bf16))[0] * acc)
        for k, e in enumerate(experts):
            y = expert_mlp(m, w["w13"][e], w["w2"][e], w["w13_scale"][e] if "w13_scale" in w else None,
                           w["w2_scale"][e] if "w2_scale" in w else None, xt,
                           w["smooth_scale1"][e] if "smooth_scale1" in w else None,
                           w["smooth_scale2"][e] if "smooth_scale2" in w else None,
                           w["clip_alpha"][e] if "clip_alpha" in w else F32(1), bf16="w13" in bf16)
            term = wk[k] * y
            acc = term if acc is None else acc + term
        out[t] = round_to(md, acc)
    return out, topk
