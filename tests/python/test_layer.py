"""moefuse.MoeLayer: every preset (shrunk to test size) in f32 / bf16 / f16 and the quantised chains equals the
oracle bit for bit; configs given as a preset name, a YAML path or a dict make the same layer; checkpoints written
here by hand (the safetensors format and the tensor names of docs/layer.md §5) load back to the layer that produced
them; torch tensors in and out; an olmoe-style f32 layer against a plain PyTorch MoE block; properties, threads, the
GIL; and every documented error with the C++ message."""

import json
import math
import os
import pathlib
import struct
import threading

import numpy as np
import pytest

import moefuse
from moefuse import _core

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
PRESETS = ["deepseek-v2-lite", "deepseek-v3", "mixtral-8x7b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b"]
CHAINS = [("f32", "none"), ("bf16", "none"), ("f16", "none"), ("bf16", "w8a8"), ("f16", "w8a8"), ("bf16", "w8a8c8")]


def numpy_dtype(name):
    if name == "bf16":
        if ml_dtypes is None:
            pytest.skip("bf16 numpy arrays need ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({"f32": np.float32, "f16": np.float16}[name])


def small(preset, dtype="f32", quant="none", **changes):
    """A preset shrunk to test size, as a dict in the YAML structure: its routing (E, K, groups, scoring, shared
    experts) kept, H = 64, I = 32 (qwen2_moe's shared expert 48)."""
    d = moefuse.load_config(preset)
    m = d["model_config"]
    m["hidden_size"] = 64
    m["moe_intermediate_size"] = 32
    if m["shared_expert_intermediate_size"] > 0:
        m["shared_expert_intermediate_size"] = 48
    m["dtype"] = dtype
    m["quant_mode"] = quant
    m.update(changes)
    return d


def tokens(seed, T, H, dtype):
    return np.random.default_rng(seed).normal(size=(T, H)).astype(np.float32).astype(numpy_dtype(dtype))


def raw(a):
    """The bits of an array (numpy of any dtype, or torch) as unsigned integers, for bitwise comparisons."""
    if type(a).__module__.startswith("torch"):
        import torch

        t = a.contiguous()
        if t.dtype in (torch.bfloat16, torch.float16):
            return t.view(torch.int16).numpy().view(np.uint16)
        a = t.numpy()
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.itemsize}")


def assert_same_bits(actual, expected, msg=""):
    a, e = raw(actual), raw(expected)
    assert a.shape == e.shape, f"{msg}: shape {a.shape} != {e.shape}"
    if not np.array_equal(a, e):
        i = tuple(np.argwhere(a != e)[0])
        raise AssertionError(f"{msg}: {int((a != e).sum())} of {a.size} differ; first at {i}")


def assert_same_weights(a, b):
    wa, wb = a.weights(), b.weights()
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert_same_bits(wa[name], wb[name], name)


def write_yaml(path, d):
    """A config dict written as the YAML file a person would write (block style, plain scalars)."""
    def scalar(v):
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    lines = [f"exe_mode: {d['exe_mode']}", "model_config:"]
    lines += [f"  {k}: {scalar(v)}" for k, v in d["model_config"].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_preset_file(name):
    """configs/<name>.yaml read with a few lines of Python (key: value, two levels), independently of moefuse."""
    def value(s):
        if s in ("true", "false"):
            return s == "true"
        try:
            return int(s)
        except ValueError:
            pass
        try:
            return float(s)
        except ValueError:
            return s.strip('"')

    d, model = {}, {}
    for line in (CONFIGS / f"{name}.yaml").read_text().splitlines():
        line = line.split("#")[0].rstrip()
        if not line:
            continue
        key, _, v = line.strip().partition(":")
        if line.startswith("  "):
            model[key] = value(v.strip())
        elif key == "model_config":
            d["model_config"] = model
        else:
            d[key] = value(v.strip())
    return d


# ------------------------------------------------------------------------------------------------------------------
# The layer against the oracle
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,quant", CHAINS, ids=[f"{d}-{q}" for d, q in CHAINS])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_chain_equals_the_oracle_bitwise(preset, dtype, quant):
    layer = moefuse.MoeLayer.from_config(small(preset, dtype, quant), seed=7, threads=2)
    x = tokens(11, 9, 64, dtype)
    y = layer(x)
    assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == (9, 64)
    assert np.isfinite(y.astype(np.float32)).all() and np.abs(y.astype(np.float32)).max() > 0.01
    assert_same_bits(y, moefuse.reference_layer_forward(layer, x), "layer(x) vs reference_layer_forward")
    assert_same_bits(layer.forward(x, is_prefill=True), y, "prefill vs decode")
    assert_same_bits(layer(x[2:5]), y[2:5], "a token's result does not depend on its batch")


@pytest.mark.parametrize("mode", ["w4a16", "w4a8"])
@pytest.mark.parametrize("preset", PRESETS)
def test_int4_modes_equal_the_oracle_and_expose_their_int4_weights(preset, mode):
    # small() keeps H = 64, I = 32; qwen2_moe's shared width 48 is not a multiple of the group size 32: 64 here.
    # w4a8: the same int4 weights with int8 per-token activations.
    d = small(preset, "bf16", mode)
    d["model_config"]["quant_group_size"] = 32
    d["model_config"]["quant_symmetric"] = False
    if d["model_config"].get("shared_expert_intermediate_size", 0):
        d["model_config"]["shared_expert_intermediate_size"] = 64
    layer = moefuse.MoeLayer.from_config(d, seed=7, threads=2)
    x = tokens(11, 9, 64, "bf16")
    y = layer(x)
    assert_same_bits(y, moefuse.reference_layer_forward(layer, x), mode + " layer(x) vs reference_layer_forward")
    assert_same_bits(layer.forward(x, is_prefill=True), y, mode + " prefill vs decode")
    w = layer.weights()
    assert w["w13"].dtype == np.uint8 and int(w["w13"].max()) <= 15
    assert w["w13_scale"].shape == (w["w13"].shape[0], w["w13"].shape[1], 64 // 32)
    assert w["w2_zero"].dtype == np.uint8 and int(w["w2_zero"].max()) <= 15
    assert layer.config["model_config"]["quant_group_size"] == 32


def test_presets_are_listed():
    assert moefuse.preset_names() == PRESETS
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == PRESETS


def test_execution_options_do_not_change_the_output():
    base = small("qwen1.5-moe-a2.7b", "bf16")
    x = tokens(3, 23, 64, "bf16")
    expected = moefuse.MoeLayer.from_config(base, seed=5, threads=1)(x)
    for exe_mode in ("eager", "ge_graph", "graph"):
        for chunk in (1, 4, 1024):
            d = small("qwen1.5-moe-a2.7b", "bf16", moe_chunk_max_len=chunk)
            d["exe_mode"] = exe_mode
            layer = moefuse.MoeLayer.from_config(d, seed=5, threads=3)
            assert_same_bits(layer(x, is_prefill=True), expected, f"{exe_mode} chunk {chunk}")
            assert_same_bits(layer(x[:5]), expected[:5], f"{exe_mode} chunk {chunk}, smaller batch")
            assert layer.last_timings["chunks"] == math.ceil(5 / chunk)


def test_strided_and_empty_inputs():
    layer = moefuse.MoeLayer.from_config(small("deepseek-v3", "f32"), seed=2)
    wide = tokens(4, 6, 128, "f32")
    assert_same_bits(layer(wide[:, ::2]), layer(np.ascontiguousarray(wide[:, ::2])), "strided x")
    assert_same_bits(layer(wide[:, :64].T.copy().T), layer(np.ascontiguousarray(wide[:, :64])), "transposed x")
    y = layer(np.zeros((0, 64), np.float32))
    assert y.shape == (0, 64) and y.dtype == np.float32
    assert layer.last_timings["tokens"] == 0


# ------------------------------------------------------------------------------------------------------------------
# Configs: preset name, YAML path, dict
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_by_name_by_path_and_as_a_dict_is_the_same_config(preset):
    expected = read_preset_file(preset)
    by_name = moefuse.load_config(preset)
    assert by_name == expected
    assert list(by_name["model_config"]) == list(expected["model_config"])  # every key, in the file's order
    assert moefuse.load_config(CONFIGS / f"{preset}.yaml") == expected
    assert moefuse.load_config(str(CONFIGS / f"{preset}.yaml")) == expected
    assert moefuse.load_config(expected) == expected
    assert moefuse.load_config("default") == moefuse.load_config("olmoe-1b-7b")


def test_from_config_by_dict_path_and_preset_name_give_the_same_layer(tmp_path, monkeypatch):
    # Shrunk: dict, str path, pathlib.Path, a relative "./" path.
    d = small("deepseek-v3", "bf16", "w8a8")
    path = write_yaml(tmp_path / "small.yaml", d)
    monkeypatch.chdir(tmp_path)
    x = tokens(1, 5, 64, "bf16")
    a = moefuse.MoeLayer.from_config(d, seed=9)
    for config in (str(path), path, "./small.yaml", "small.yaml", a.config):
        b = moefuse.MoeLayer.from_config(config, seed=9, threads=1)
        assert b.config == d
        assert_same_weights(a, b)
        assert_same_bits(b(x), a(x), repr(config))
    other = moefuse.MoeLayer.from_config(d, seed=10)
    assert not np.array_equal(raw(other.weights()["w13"]), raw(a.weights()["w13"]))


def test_from_config_of_a_full_size_preset_by_name():
    # One real preset by name (the default, olmoe-1b-7b: 0.8 GB of bf16 weights, built once). Random weights are
    # counter-based (value i of a tensor depends on the seed, the tensor and i alone: docs/layer.md §5), so the
    # same config as a dict with only 8 of the 64 experts has exactly the first 8 experts' weights.
    a = moefuse.MoeLayer.from_config("default", seed=3)
    assert a.config == read_preset_file("olmoe-1b-7b")
    wa = a.weights()
    assert {n: w.shape for n, w in wa.items()} == {"router": (64, 2048), "w13": (64, 2048, 2048),
                                                   "w2": (64, 2048, 1024)}
    d = read_preset_file("olmoe-1b-7b")
    d["model_config"]["num_experts"] = 8
    wb = moefuse.MoeLayer.from_config(d, seed=3).weights()
    for name in wa:
        assert_same_bits(wa[name][:8], wb[name], name)
    assert not np.array_equal(raw(wa["w13"][8:16]), raw(wb["w13"]))


def test_a_dict_is_read_like_the_yaml_file():
    m = {"model_type": "qwen2_moe", "num_experts": np.int64(8), "num_experts_per_tok": 2, "hidden_size": 64,
         "moe_intermediate_size": 32, "scoring_func": "softmax", "norm_topk_prob": np.bool_(False),
         "shared_expert_intermediate_size": 48, "routed_scaling_factor": 2}
    d = moefuse.load_config({"exe_mode": "graph", "model_config": m})
    # Defaults filled in, the qwen2_moe rule applied (a shared width without n_shared_experts means one), graph is
    # ge_graph, an int scaling factor is a number.
    assert d["exe_mode"] == "ge_graph"
    assert d["model_config"]["n_shared_experts"] == 1
    assert d["model_config"]["routed_scaling_factor"] == 2.0
    assert d["model_config"]["dtype"] == "bf16" and d["model_config"]["moe_chunk_max_len"] == 1024
    assert d["model_config"]["num_experts"] == 8 and type(d["model_config"]["num_experts"]) is int
    assert moefuse.load_config(dict(d, model_config=dict(d["model_config"], routed_scaling_factor=1e-05))
                               )["model_config"]["routed_scaling_factor"] == 1e-05


def test_config_property_is_a_fresh_dict():
    d = small("mixtral-8x7b")
    layer = moefuse.MoeLayer.from_config(d, seed=1)
    c = layer.config
    c["model_config"]["hidden_size"] = 1
    assert layer.config == d


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints written by hand: safetensors (8-byte LE header length, JSON header, data) and docs/layer.md §5's names
# ------------------------------------------------------------------------------------------------------------------

ST_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        data = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": ST_DTYPE[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return path


def hf_tensors(config, w, layer_index):
    """The layer's weights under their Hugging Face names (docs/layer.md §5), int8 ones with their weight_scale."""
    m = config["model_config"]
    mixtral = m["model_type"] == "mixtral"
    p = f"model.layers.{layer_index}." + ("block_sparse_moe" if mixtral else "mlp")
    gate, up, down = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    t = {f"{p}.gate.weight": w["router"]}
    if "router_bias" in w:
        t[f"{p}.gate.e_score_correction_bias"] = w["router_bias"]

    def projection(name, weight, scale):
        t[f"{name}.weight"] = weight
        if scale is not None:
            t[f"{name}.weight_scale"] = scale

    I = m["moe_intermediate_size"]
    w13_scale, w2_scale = w.get("w13_scale"), w.get("w2_scale")
    for e in range(m["num_experts"]):
        ep = f"{p}.experts.{e}."
        projection(ep + gate, w["w13"][e, :I], None if w13_scale is None else w13_scale[e, :I])
        projection(ep + up, w["w13"][e, I:], None if w13_scale is None else w13_scale[e, I:])
        projection(ep + down, w["w2"][e], None if w2_scale is None else w2_scale[e])
        if "smooth_scale1" in w:
            t[f"{ep}{gate}.smooth_scale"] = w["smooth_scale1"][e]
        if "smooth_scale2" in w:
            t[f"{ep}{down}.smooth_scale"] = w["smooth_scale2"][e]
        if "clip_alpha" in w:
            t[f"{ep}{down}.clip_alpha"] = w["clip_alpha"][e:e + 1]
    if "shared_w13" in w:
        sp = p + (".shared_expert." if m["model_type"] == "qwen2_moe" else ".shared_experts.")
        Is = w["shared_w13"].shape[1] // 2
        s13, s2 = w.get("shared_w13_scale"), w.get("shared_w2_scale")
        projection(sp + "gate_proj", w["shared_w13"][0, :Is], None if s13 is None else s13[0, :Is])
        projection(sp + "up_proj", w["shared_w13"][0, Is:], None if s13 is None else s13[0, Is:])
        projection(sp + "down_proj", w["shared_w2"][0], None if s2 is None else s2[0])
        if "shared_gate" in w:
            t[f"{p}.shared_expert_gate.weight"] = w["shared_gate"]
    return t


@pytest.mark.parametrize("preset", PRESETS)
def test_from_pretrained_loads_the_layer_that_wrote_the_checkpoint(preset, tmp_path):
    for dtype, quant in [("f32", "none"), ("bf16", "none"), ("bf16", "w8a8"), ("bf16", "w8a8c8")]:
        d = small(preset, dtype, quant)
        a = moefuse.MoeLayer.from_config(d, seed=11)
        path = write_safetensors(tmp_path / f"{dtype}-{quant}.safetensors", hf_tensors(d, a.weights(), 3))
        b = moefuse.MoeLayer.from_pretrained(path, 3, d, threads=2)
        assert b.config == d and b.threads == 2
        assert_same_weights(a, b)
        x = tokens(5, 7, 64, dtype)
        assert_same_bits(b(x), a(x), f"{dtype} {quant}")


@pytest.mark.parametrize("preset", ["olmoe-1b-7b", "deepseek-v3", "qwen1.5-moe-a2.7b"])
def test_a_float_checkpoint_with_a_quantised_config_is_quantised_on_load(preset, tmp_path):
    # from_config's quantised weights are its float weights rounded to the model dtype and quantised per output
    # channel, as on load: a bf16 checkpoint of the bf16 layer read with quant_mode w8a8 is the w8a8 layer.
    a = moefuse.MoeLayer.from_config(small(preset, "bf16"), seed=12)
    path = write_safetensors(tmp_path / "bf16.safetensors", hf_tensors(a.config, a.weights(), 0))
    for quant in ("w8a8", "w8a8c8"):
        d = small(preset, "bf16", quant)
        b = moefuse.MoeLayer.from_pretrained(path, 0, d)
        assert b.weights()["w13"].dtype == np.int8
        assert_same_weights(b, moefuse.MoeLayer.from_config(d, seed=12))


def test_from_pretrained_reads_a_directory_an_index_and_shards(tmp_path):
    d = small("mixtral-8x7b", "bf16")
    a = moefuse.MoeLayer.from_config(d, seed=4)
    tensors = hf_tensors(d, a.weights(), 1)
    (tmp_path / "one").mkdir()
    write_safetensors(tmp_path / "one" / "model.safetensors", tensors)
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for file, part in shards.items():
        write_safetensors(sharded / file, {n: tensors[n] for n in part})
    index = {"metadata": {}, "weight_map": {n: f for f, part in shards.items() for n in part}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    x = tokens(6, 4, 64, "bf16")
    for path in (tmp_path / "one", str(tmp_path / "one"), sharded, sharded / "model.safetensors.index.json"):
        b = moefuse.MoeLayer.from_pretrained(path, layer=1, config=d)
        assert_same_weights(a, b)
        assert_same_bits(b(x), a(x), str(path))


def test_a_checkpoint_in_another_float_dtype_is_converted(tmp_path):
    a = moefuse.MoeLayer.from_config(small("deepseek-v2-lite", "f32"), seed=4)
    path = write_safetensors(tmp_path / "f32.safetensors", hf_tensors(a.config, a.weights(), 0))
    b = moefuse.MoeLayer.from_pretrained(path, 0, small("deepseek-v2-lite", "f16"))
    for name in ("router", "w13", "w2", "shared_w13", "shared_w2"):
        assert_same_bits(b.weights()[name], a.weights()[name].astype(np.float16), name)


# ------------------------------------------------------------------------------------------------------------------
# torch
# ------------------------------------------------------------------------------------------------------------------


def test_torch_bf16_in_torch_bf16_out():
    torch = pytest.importorskip("torch")
    layer = moefuse.MoeLayer.from_config(small("qwen3-30b-a3b", "bf16"), seed=8)
    x = torch.randn(7, 64, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    y = layer(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16 and tuple(y.shape) == (7, 64)
    assert_same_bits(y, moefuse.reference_layer_forward(layer, x), "torch bf16")
    if ml_dtypes is not None:
        xn = x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        assert_same_bits(y, layer(xn), "torch vs numpy bf16")
    with pytest.raises(TypeError, match=r"^MoeLayer: x: expected dtype bf16"):
        layer(x.float())


def hf_olmoe_block(torch, x, w, top_k, norm_topk_prob=False):
    """Hugging Face's OlmoeSparseMoeBlock written out in plain PyTorch: fp32 router, softmax, top-k (renormalised
    only with norm_topk_prob), and a loop over the experts, each a SwiGLU MLP on the tokens routed to it."""
    F = torch.nn.functional
    t = {name: torch.from_numpy(np.array(a)) for name, a in w.items()}
    E, I = t["w13"].shape[0], t["w13"].shape[1] // 2
    router_logits = x @ t["router"].T
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    if norm_topk_prob:
        routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
    routing_weights = routing_weights.to(x.dtype)
    out = torch.zeros_like(x)
    expert_mask = F.one_hot(selected_experts, num_classes=E).permute(2, 1, 0)
    for e in range(E):
        idx, top_x = torch.where(expert_mask[e])
        if top_x.numel() == 0:
            continue
        h = x[top_x]
        gate, up, down = t["w13"][e, :I], t["w13"][e, I:], t["w2"][e]
        y = (F.silu(h @ gate.T) * (h @ up.T)) @ down.T
        out.index_add_(0, top_x, y * routing_weights[top_x, idx, None])
    return out


def test_olmoe_f32_layer_against_a_plain_pytorch_moe_block():
    torch = pytest.importorskip("torch")
    d = small("olmoe-1b-7b", "f32")
    layer = moefuse.MoeLayer.from_config(d, seed=13)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    y = layer(x)
    expected = hf_olmoe_block(torch, x, layer.weights(), d["model_config"]["num_experts_per_tok"])
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    # The comparison can tell the routing apart: with renormalised top-k weights the block is far off.
    renormalised = hf_olmoe_block(torch, x, layer.weights(), 8, norm_topk_prob=True)
    assert (renormalised - y).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------------------------------
# Properties, weights, threads, the GIL
# ------------------------------------------------------------------------------------------------------------------


def test_properties():
    d = small("deepseek-v3", "bf16", moe_chunk_max_len=4)
    layer = moefuse.MoeLayer.from_config(d, seed=1, threads=3)
    assert layer.threads == 3 and layer.path == "chain"
    assert moefuse.MoeLayer.from_config(d).threads >= 1  # 0 = every core
    layer(tokens(1, 9, 64, "bf16"))
    assert layer.path == "superkernel"  # decode, bf16, widths multiples of 32
    layer.forward(tokens(1, 9, 64, "bf16"), is_prefill=True)
    assert layer.path == "chain"
    declined = moefuse.MoeLayer.from_config(small("olmoe-1b-7b", "bf16", moe_intermediate_size=80), seed=1)
    declined(tokens(1, 2, 64, "bf16"))
    assert declined.path == "chain: I=80 is not a multiple of 32"  # the fused path was asked for and said why not
    t = layer.last_timings
    assert list(t) == ["router", "gating", "routing", "experts", "shared", "combine", "total", "tokens", "chunks",
                       "weight_bytes", "active_experts"]
    assert t["weight_bytes"] > 0 and t["active_experts"] > 0
    assert t["tokens"] == 9 and t["chunks"] == 3
    assert all(t[k] >= 0 for k in t) and t["total"] > 0 and t["experts"] > 0 and t["shared"] > 0
    assert repr(layer) == ("moefuse.MoeLayer(deepseek_v3, E=256, K=8, H=64, I=32, dtype=bf16, quant_mode=none, "
                           "threads=3)")


def test_weights_are_read_only_views_in_the_documented_layouts():
    d = small("qwen1.5-moe-a2.7b", "bf16", "w8a8")
    layer = moefuse.MoeLayer.from_config(d, seed=1)
    w = layer.weights()
    E, H, I, Is = 60, 64, 32, 48
    shapes = {"router": (E, H), "w13": (E, 2 * I, H), "w2": (E, H, I), "w13_scale": (E, 2 * I), "w2_scale": (E, H),
              "shared_w13": (1, 2 * Is, H), "shared_w2": (1, H, Is), "shared_w13_scale": (1, 2 * Is),
              "shared_w2_scale": (1, H), "shared_gate": (1, H)}
    assert {n: a.shape for n, a in w.items()} == shapes
    assert w["w13"].dtype == np.int8 and w["w13_scale"].dtype == np.float32
    with pytest.raises(ValueError):
        w["w13"][0, 0, 0] = 1
    del layer
    assert w["w2"].sum() != 0  # the arrays keep the weights alive


def test_the_gil_is_released_while_the_layer_loads_and_computes():
    _core._last_call_released_gil()  # reset
    layer = moefuse.MoeLayer.from_config(small("olmoe-1b-7b", "f32"), seed=1)
    assert _core._last_call_released_gil()
    x = tokens(1, 4, 64, "f32")
    layer(x)
    assert _core._last_call_released_gil()
    moefuse.reference_layer_forward(layer, x)
    assert _core._last_call_released_gil()
    assert not _core._last_call_released_gil()


def test_one_layer_used_from_several_threads():
    # Forward passes of one layer from several Python threads (the GIL released) run one at a time: every result
    # is the single-threaded one, in graph mode, whose workspaces the layer reuses.
    layer = moefuse.MoeLayer.from_config(small("deepseek-v2-lite", "f32", moe_chunk_max_len=3), seed=2, threads=2)
    inputs = [tokens(s, 5 + s, 64, "f32") for s in range(4)]
    expected = [layer(x) for x in inputs]
    errors = []

    def run(i):
        try:
            for _ in range(20):
                assert_same_bits(layer(inputs[i]), expected[i], f"thread {i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# ------------------------------------------------------------------------------------------------------------------
# Errors: the C++ messages, as ValueError / TypeError / OSError / MemoryError
# ------------------------------------------------------------------------------------------------------------------


def with_model(**changes):
    d = small("olmoe-1b-7b")
    d["model_config"].update(changes)
    return d


def without(key):
    d = small("olmoe-1b-7b")
    del d["model_config"][key]
    return d


CONFIG_ERRORS = [
    (with_model(num_expert=4), ValueError,
     "config dict: model_config.num_expert: expected a known key (model_type, ", "did you mean num_experts?"),
    ({"exe_mode": "ge_graph", "model_config": {}, "seed": 1}, ValueError,
     "config dict: seed: expected a known key (exe_mode, numerics, model_config), got an unknown key", ""),
    (with_model(num_experts="64"), ValueError,
     'config dict: model_config.num_experts: expected an integer, got the string "64"', ""),
    (with_model(hidden_size=64.0), ValueError, "config dict: model_config.hidden_size: expected an integer, got 64.0",
     ""),
    (with_model(norm_topk_prob=1), ValueError, "config dict: model_config.norm_topk_prob: expected true or false, "
     "got 1", ""),
    (with_model(num_experts_per_tok=65), ValueError,
     "config dict: model_config.num_experts_per_tok: expected 1 <= num_experts_per_tok <= num_experts (64), got 65",
     ""),
    (with_model(routed_scaling_factor=float("inf")), ValueError,
     "config dict: model_config.routed_scaling_factor: expected a number, got .inf", ""),
    (with_model(dtype="f64"), ValueError, "config dict: model_config.dtype: expected one of bf16, f16 or f32, got "
     'the string "f64"', ""),
    (with_model(quant_mode="w8a8"), ValueError, "config dict: model_config.quant_mode: expected none with dtype f32",
     ""),
    (with_model(n_group=3), ValueError, "config dict: model_config.n_group: expected a divisor of num_experts (64), "
     "got 3", ""),
    (with_model(model_type=None), ValueError, "config dict: model_config.model_type: expected one of deepseek_v3, ",
     "got null"),
    (without("scoring_func"), ValueError,
     "config dict: model_config.scoring_func: expected one of softmax or sigmoid (a required key), got no value", ""),
    ({"exe_mode": "fast"}, ValueError, "config dict: exe_mode: expected one of eager, ge_graph or graph, got ", ""),
    ({"exe_mode": "ge_graph"}, ValueError, "config dict: model_config: expected a mapping (a required key)", ""),
    ({"model_config": [1, 2]}, ValueError, "config dict: model_config: expected a mapping, got a sequence", ""),
    (with_model(num_experts=object()), TypeError, "config dict: model_config.num_experts: expected a str, bool, int",
     ""),
    ({("a", "b"): 1}, TypeError, "config dict: (top level): expected str keys, got a key of type tuple", ""),
    ("qwen3", ValueError, "preset: name: expected one of default, deepseek-v2-lite, deepseek-v3, ", 'got "qwen3"'),
    ("missing/config.yaml", OSError, "load_config_file: missing/config.yaml: ", ""),
    (12, TypeError, "MoeLayer.from_config: config: expected a preset name, a YAML file path or a dict", "got int"),
]


@pytest.mark.parametrize("config,error,start,also", CONFIG_ERRORS, ids=[str(i) for i in range(len(CONFIG_ERRORS))])
def test_config_errors_carry_the_cpp_message(config, error, start, also):
    with pytest.raises(error) as info:
        moefuse.MoeLayer.from_config(config)
    message = str(info.value)
    assert message.startswith(start), message
    assert also in message, message


def test_config_file_errors_name_the_file_line_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model_config:\n  model_type: olmoe\n  num_experts: 64\n  num_experts_per_tok: 65\n")
    with pytest.raises(ValueError, match=r"^.*bad\.yaml:2:3: model_config\.hidden_size: expected an integer \(a "
                                         r"required key\), got no value$"):
        moefuse.MoeLayer.from_config(path)
    path.write_text(path.read_text() + "  hidden_size: 64\n  moe_intermediate_size: 32\n  scoring_func: softmax\n"
                    "  norm_topk_prob: false\n")
    with pytest.raises(ValueError, match=r"bad\.yaml:4:24: model_config\.num_experts_per_tok: expected 1 <= "):
        moefuse.MoeLayer.from_config(str(path))
    path.write_text("model_config: [\n")
    with pytest.raises(OSError, match=r"bad\.yaml:\d+:\d+: YAML: expected valid YAML"):
        moefuse.load_config(path)


def test_layer_errors(tmp_path):
    d = small("olmoe-1b-7b", "f32")
    layer = moefuse.MoeLayer.from_config(d, seed=1)
    x = tokens(1, 3, 64, "f32")
    cases = [
        (lambda: layer(x[:, :63]), ValueError, "MoeLayer: x: expected shape [T, 64] (hidden_size), got [3, 63]"),
        (lambda: layer(x[0]), ValueError, "MoeLayer: x: expected a 2-D tensor, got f32[64]"),
        (lambda: layer(x.astype(np.float16)), TypeError, "MoeLayer: x: expected dtype f32, got f16"),
        (lambda: layer(x.astype(np.int32)), TypeError, "MoeLayer: x: expected dtype f32, got i32"),
        (lambda: layer(x.astype(np.float64)), TypeError, "MoeLayer: x: expected a tensor of dtype"),
        (lambda: layer([[1.0] * 64]), TypeError, "MoeLayer: x: expected a numpy array or a DLPack-capable"),
        (lambda: layer(x, is_prefill=1), TypeError, "MoeLayer: is_prefill: expected a bool, got int"),
        (lambda: moefuse.reference_layer_forward(layer, x[:, :8]), ValueError,
         "reference_layer_forward: x: expected shape [T, 64]"),
        (lambda: moefuse.reference_layer_forward(d, x), TypeError,
         "reference_layer_forward: layer: expected a moefuse.MoeLayer, got dict"),
        (lambda: moefuse.MoeLayer.from_config(d, seed=-1), ValueError,
         "MoeLayer.from_config: seed: expected 0 <= seed < 2**64, got -1"),
        (lambda: moefuse.MoeLayer.from_config(d, seed=1.5), TypeError,
         "MoeLayer.from_config: seed: expected an int, got float"),
        (lambda: moefuse.MoeLayer.from_config(d, threads=-1), ValueError,
         "MoeLayer: threads: expected 0 (every core) or a count in 1..1024, got -1"),
        (lambda: moefuse.MoeLayer.from_config(d, threads=2 ** 40), ValueError, "MoeLayer.from_config: threads:"),
        (lambda: moefuse.MoeLayer(), TypeError, "MoeLayer: use MoeLayer.from_config"),
        # Refused before allocating anything: far more than any machine has.
        (lambda: moefuse.MoeLayer.from_config(with_model(num_experts=2048, hidden_size=2 ** 24,
                                                         moe_intermediate_size=2 ** 24)), MemoryError,
         "MoeLayer: memory: expected the layer to fit in "),
    ]
    for call, error, start in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value).startswith(start), str(info.value)


def test_checkpoint_errors(tmp_path):
    d = small("olmoe-1b-7b", "f32")
    a = moefuse.MoeLayer.from_config(d, seed=1)
    tensors = hf_tensors(d, a.weights(), 0)
    missing_name = "model.layers.0.mlp.experts.5.down_proj.weight"
    wrong_shape = dict(tensors)
    wrong_shape[missing_name] = tensors[missing_name][:, :16]
    incomplete = {n: t for n, t in tensors.items() if n != missing_name}
    write_safetensors(tmp_path / "incomplete.safetensors", incomplete)
    write_safetensors(tmp_path / "shape.safetensors", wrong_shape)
    (tmp_path / "truncated.safetensors").write_bytes(
        (write_safetensors(tmp_path / "full.safetensors", tensors)).read_bytes()[:-5])
    cases = [
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "absent.safetensors", 0, d), OSError,
         f"Checkpoint: {tmp_path / 'absent.safetensors'}: expected a .safetensors file"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path, 0, d), OSError,
         f"Checkpoint: {tmp_path}: expected a directory holding model.safetensors"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "incomplete.safetensors", 0, d), OSError,
         f"{tmp_path / 'incomplete.safetensors'}: tensor \"{missing_name}\": expected a tensor of this checkpoint, "
         "got none"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "full.safetensors", 1, d), OSError,
         f"{tmp_path / 'full.safetensors'}: tensor \"model.layers.1.mlp.gate.weight\": expected a tensor"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "shape.safetensors", 0, d), ValueError,
         f"{tmp_path / 'shape.safetensors'}: {missing_name}: expected shape [H, I] = [64, 32], got [64, 16]"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "truncated.safetensors", 0, d), OSError,
         f"{tmp_path / 'truncated.safetensors'}"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "full.safetensors", 0, small("olmoe-1b-7b", "bf16",
                                                                                            hidden_size=48)),
         ValueError, f"{tmp_path / 'full.safetensors'}: model.layers.0.mlp.gate.weight: expected shape"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "full.safetensors", 0), TypeError,
         "MoeLayer.from_pretrained: config: expected a preset name, a YAML file path or a dict"),
        (lambda: moefuse.MoeLayer.from_pretrained(tmp_path / "full.safetensors", -1, d), ValueError,
         "MoeLayer.from_pretrained: layer: expected a layer index >= 0, got -1"),
        (lambda: moefuse.MoeLayer.from_pretrained(3, 0, d), TypeError,
         "MoeLayer.from_pretrained: checkpoint: expected a path (str or os.PathLike), got int"),
    ]
    for call, error, start in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value).startswith(start), str(info.value)
    int8 = small("olmoe-1b-7b", "bf16", "w8a8")
    q = moefuse.MoeLayer.from_config(int8, seed=1)
    write_safetensors(tmp_path / "int8.safetensors", hf_tensors(int8, q.weights(), 0))
    with pytest.raises(ValueError, match=r"expected a float tensor for quant_mode none"):
        moefuse.MoeLayer.from_pretrained(tmp_path / "int8.safetensors", 0, small("olmoe-1b-7b", "bf16"))
    assert os.path.exists(tmp_path / "int8.safetensors")


def test_a_thread_count_over_the_maximum_is_a_value_error_not_a_hang():
    d = small("olmoe-1b-7b", "f32")
    for threads in (1025, 10 ** 9, 10 ** 12):
        with pytest.raises(ValueError, match=r"threads: expected 0 \(every core\) or a count in 1\.\.1024, got " +
                           str(threads)):
            moefuse.MoeLayer.from_config(d, seed=1, threads=threads)


def test_non_finite_weights_are_refused_unless_allowed(tmp_path):
    d = small("olmoe-1b-7b", "f32")
    a = moefuse.MoeLayer.from_config(d, seed=1)
    tensors = hf_tensors(d, a.weights(), 0)
    name = "model.layers.0.mlp.gate.weight"
    router = np.array(tensors[name])
    router[3, 17] = np.nan
    tensors[name] = router
    path = write_safetensors(tmp_path / "nan.safetensors", tensors)
    with pytest.raises(ValueError) as info:
        moefuse.MoeLayer.from_pretrained(path, 0, d)
    message = str(info.value)
    assert message.startswith(f"{path}: {name}: expected finite values"), message
    assert message.endswith("got nan at [3, 17]"), message
    down = "model.layers.0.mlp.experts.2.down_proj.weight"
    tensors[name] = np.array(a.weights()["router"])
    tensors[down] = np.array(tensors[down])
    tensors[down][5, 1] = -np.inf
    path = write_safetensors(tmp_path / "inf.safetensors", tensors)
    with pytest.raises(ValueError, match=r"experts\.2\.down_proj\.weight: expected finite values .* got -inf at \[5, 1\]"):
        moefuse.MoeLayer.from_pretrained(path, 0, small("olmoe-1b-7b", "bf16", "w8a8"))  # quantised on load
    # Allowed, the layer computes with it (IEEE arithmetic).
    allowed = moefuse.MoeLayer.from_pretrained(tmp_path / "nan.safetensors", 0, d, allow_non_finite=True)
    assert np.isnan(allowed.weights()["router"][3, 17])
    assert np.isnan(allowed(tokens(1, 3, 64, "f32"))).any()
    with pytest.raises(TypeError, match="allow_non_finite"):
        moefuse.MoeLayer.from_pretrained(path, 0, d, allow_non_finite="yes")


def test_a_path_holding_a_nul_character_is_refused(tmp_path):
    d = small("olmoe-1b-7b", "f32")
    a = moefuse.MoeLayer.from_config(d, seed=1)
    ckpt = write_safetensors(tmp_path / "w.safetensors", hf_tensors(d, a.weights(), 0))
    yaml = write_yaml(tmp_path / "c.yaml", moefuse.load_config(d))
    # Each prefix before the NUL is a valid file, which the C library would open.
    for call in [lambda: moefuse.MoeLayer.from_pretrained(str(ckpt) + "\0.bak", 0, d),
                 lambda: moefuse.MoeLayer.from_pretrained(pathlib.Path(str(ckpt) + "\0x"), 0, d),
                 lambda: moefuse.MoeLayer.from_pretrained(ckpt, 0, str(yaml) + "\0x"),
                 lambda: moefuse.MoeLayer.from_config(pathlib.Path(str(yaml) + "\0x")),
                 lambda: moefuse.load_config(str(yaml) + "\0.yaml")]:
        with pytest.raises(ValueError, match="expected a path without NUL characters"):
            call()


def test_recursive_or_deeply_nested_config_dicts_are_value_errors():
    d = small("olmoe-1b-7b", "f32")
    d["model_config"]["self"] = d
    with pytest.raises(ValueError, match=r"config dict: model_config\.self: expected a tree .* contains itself"):
        moefuse.MoeLayer.from_config(d)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        moefuse.load_config({"model_config": {"num_experts": loop}})
    deep = leaf = {}
    for _ in range(100000):
        leaf["a"] = {}
        leaf = leaf["a"]
    with pytest.raises(ValueError, match="expected at most 32 levels of nesting"):
        moefuse.load_config(deep)
    nested = [[[[1]]]]
    for _ in range(50):
        nested = [nested]
    with pytest.raises(ValueError, match="levels of nesting"):
        moefuse.load_config({"model_config": {"num_experts": nested}})
