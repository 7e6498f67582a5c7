"""GPTQ (and AWQ) int4 model folders read as shipped: MoeLayer.from_pretrained(DIR, layer=L) with no config on a
folder whose config.json says quant_method "gptq" (or "awq"). The folders are derived here from the committed test
folders (tests/data/models, read as raw safetensors) by numpy writers of the formats: experts' width raised to 32 (the
committed 16 is narrower than any group), every expert and shared-expert projection packed as qweight / qzeros /
scales (/ g_idx) from random int4 values, every other tensor copied."""

import json
import pathlib
import struct

import numpy as np
import pytest

import moefuse
from mf_testutil import read_safetensors_raw

MODELS = pathlib.Path(__file__).resolve().parents[1] / "data" / "models"


def write_raw(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def gptq_pack(q, z, scale, G):
    """GPTQ's v1 format of q [out, in] (0..15), z [in / G, out] (1..15), scale [in / G, out]: qweight [in / 8, out]
    with value j of a word at bits 4j along the input dim, qzeros [in / G, out / 8] holding z - 1 along the output
    dim, f16 scales, g_idx i / G."""
    out, inp = q.shape
    qw = np.zeros((inp // 8, out), np.uint32)
    for j in range(8):
        qw |= q.T[j::8].astype(np.uint32) << np.uint32(4 * j)
    qz = np.zeros((inp // G, out // 8), np.uint32)
    for j in range(8):
        qz |= ((z[:, j::8] - 1) & 15).astype(np.uint32) << np.uint32(4 * j)
    g_idx = (np.arange(inp) // G).astype(np.int32)
    return {"qweight": ("I32", qw.shape, qw.view(np.int32).tobytes()),
            "qzeros": ("I32", qz.shape, qz.view(np.int32).tobytes()),
            "scales": ("F16", scale.shape, scale.astype(np.float16).tobytes()),
            "g_idx": ("I32", g_idx.shape, g_idx.tobytes())}


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # AutoAWQ packs outputs 8c + AWQ_ORDER[n] into nibble n of word c


def awq_pack(q, z, scale, G):
    """AutoAWQ's GEMM format of the same values: qweight [in, out / 8] and qzeros [in / G, out / 8] (z itself),
    packed along the output dim in AWQ_ORDER; f16 scales; no g_idx."""
    out, inp = q.shape
    qw = np.zeros((inp, out // 8), np.uint32)
    qz = np.zeros((inp // G, out // 8), np.uint32)
    for n, j in enumerate(AWQ_ORDER):
        qw |= q.T[:, j::8].astype(np.uint32) << np.uint32(4 * n)
        qz |= z[:, j::8].astype(np.uint32) << np.uint32(4 * n)
    return {"qweight": ("I32", qw.shape, qw.view(np.int32).tobytes()),
            "qzeros": ("I32", qz.shape, qz.view(np.int32).tobytes()),
            "scales": ("F16", scale.shape, scale.astype(np.float16).tobytes())}


FAMILIES = {  # moe layers, prefix, (gate, up, down), width key, dtype
    "qwen2_moe": ([1, 3], "mlp", ("gate_proj", "up_proj", "down_proj"), "moe_intermediate_size", "bf16"),
    "mixtral": ([0, 1], "block_sparse_moe", ("w1", "w3", "w2"), "intermediate_size", "f16"),
}


def gptq_folder(tmp_path, family, sym=True, quantization=None, G=32, seed=0, width=32, pack=gptq_pack):
    layers, part, names, width_key, _ = FAMILIES[family]
    src = MODELS / family
    config = json.loads((src / "config.json").read_text())
    config[width_key] = width
    config["quantization_config"] = quantization or {
        "bits": 4, "group_size": G, "damp_percent": 0.01, "desc_act": False, "static_groups": False, "sym": sym,
        "true_sequential": True, "model_name_or_path": None, "model_file_base_name": None, "quant_method": "gptq"}
    folder = tmp_path / family
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {}
    for f in sorted(src.glob("*.safetensors")):
        tensors.update(read_safetensors_raw(f))
    rng = np.random.default_rng(seed)
    packed, out, H = {}, {}, config["hidden_size"]
    for name, t in tensors.items():
        moe = any(name.startswith(f"model.layers.{l}.{part}.") for l in layers)
        expert = ".experts." in name or ".shared_expert." in name
        if not (moe and expert and name.endswith(".weight")):
            out[name] = t
            continue
        w = width if ".experts." in name else config["shared_expert_intermediate_size"]
        rows, cols = (H, w) if name.endswith(f".{names[2]}.weight") else (w, H)
        q = rng.integers(0, 16, (rows, cols))
        z = np.full((cols // G, rows), 8) if sym else rng.integers(1, 16, (cols // G, rows))
        s = rng.uniform(0.001, 0.05, (cols // G, rows)).astype(np.float16).astype(np.float32)
        base = name[:-len("weight")]
        for k, v in pack(q, z, s, G).items():
            out[base + k] = v
        packed[name] = (q, z, s)
    write_raw(folder / "model.safetensors", out)
    return folder, packed


def explicit(family, sym, mode="w4a16"):
    layers, _, _, _, dtype = FAMILIES[family]
    m = dict(model_type=family, num_experts=6 if family == "qwen2_moe" else 4, num_experts_per_tok=2, hidden_size=32,
             moe_intermediate_size=32, scoring_func="softmax", norm_topk_prob=family == "mixtral", dtype=dtype,
             quant_mode=mode, quant_group_size=32, quant_symmetric=sym)
    if family == "qwen2_moe":
        m["shared_expert_intermediate_size"] = 32
    return {"model_config": m}


def tokens(dtype, rows, seed):
    x = np.random.default_rng(seed).standard_normal((rows, 32)).astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    return x.astype(pytest.importorskip("ml_dtypes").bfloat16)


@pytest.mark.parametrize("family,sym", [("qwen2_moe", False), ("mixtral", True)])
def test_gptq_folder_equals_the_explicit_config(tmp_path, family, sym):
    folder, packed = gptq_folder(tmp_path, family, sym)
    info = moefuse.model_config(folder)
    assert info["quant_mode"] == "w4a16"
    assert info["gptq"] == {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": sym, "desc_act": False,
                            "checkpoint_format": "gptq"}
    layers, part, names, _, dtype = FAMILIES[family]
    for layer in layers:
        a = moefuse.MoeLayer.from_pretrained(folder, layer=layer, threads=2)
        assert a.config["model_config"]["quant_group_size"] == 32
        b = moefuse.MoeLayer.from_pretrained(folder / "model.safetensors", layer, explicit(family, sym), threads=2)
        x = tokens(dtype, 9, layer)
        assert np.asarray(a(x)).tobytes() == np.asarray(b(x)).tobytes()
        # The values the layer holds are the ones packed: expert 1's gate rows and its zero points.
        q, z, s = packed[f"model.layers.{layer}.{part}.experts.1.{names[0]}.weight"]
        w = a.weights()
        assert np.array_equal(np.asarray(w["w13"])[1, :32], q)
        assert np.array_equal(np.asarray(w["w13_zero"])[1, :32], z.T)
        assert np.array_equal(np.asarray(w["w13_scale"])[1, :32], s.T)


def test_gptq_folder_errors(tmp_path):
    base = {"bits": 4, "group_size": 32, "sym": True, "desc_act": True, "quant_method": "gptq"}
    (tmp_path / "a").mkdir()
    folder, _ = gptq_folder(tmp_path / "a", "mixtral", quantization=base)
    moefuse.MoeLayer.from_pretrained(folder, layer=0)  # desc_act with g_idx i / G reads
    # A g_idx naming a group the input does not have (H = 32: one group), naming the file and tensor.
    t = read_safetensors_raw(folder / "model.safetensors")
    name = "model.layers.0.block_sparse_moe.experts.2.w3.g_idx"
    g = np.zeros(32, np.int32)
    g[5] = 1
    t[name] = ("I32", [32], g.tobytes())
    write_raw(folder / "model.safetensors", t)
    with pytest.raises(ValueError, match=r"model\.safetensors: " + name.replace(".", r"\.") +
                       r": expected groups 0\.\.0 \(H / 32 groups\), got g_idx\[5\] = 1"):
        moefuse.MoeLayer.from_pretrained(folder, layer=0)
    for q, match in [(dict(base, bits=8), r"config\.json: quantization_config\.bits: expected 4"),
                     (dict(base, group_size=16), r"quantization_config\.group_size: expected 32, 64 or 128"),
                     (dict(base, group_size=64),
                      r"group_size: expected a group size dividing hidden_size \(32\), got 64")]:
        (tmp_path / "b").mkdir(exist_ok=True)
        d = tmp_path / "b" / str(q["bits"] * 1000 + q["group_size"])
        d.mkdir()
        f, _ = gptq_folder(d, "mixtral", quantization=q)
        with pytest.raises(ValueError, match=match):
            moefuse.MoeLayer.from_pretrained(f, layer=0)


def test_gptq_folder_in_act_order(tmp_path):
    """Act order (desc_act with a permuted g_idx): down's 64 input channels in two groups, the even and the odd
    ones, read through the same C++ loading (gate's and up's rows put in down's order; docs/layer.md §5): the layer
    equals its oracle, and equals the same folder with down's columns (and gate's and up's rows) reordered by hand
    into consecutive groups."""
    base = {"bits": 4, "group_size": 32, "sym": False, "desc_act": True, "quant_method": "gptq"}
    folder, packed = gptq_folder(tmp_path, "mixtral", sym=False, quantization=base, width=64)
    t = read_safetensors_raw(folder / "model.safetensors")
    order = np.concatenate([np.arange(0, 64, 2), np.arange(1, 64, 2)])  # the channels of group 0, then group 1
    plain = dict(t)
    for e in range(4):
        p = f"model.layers.0.block_sparse_moe.experts.{e}."
        t[p + "w2.g_idx"] = ("I32", [64], (np.arange(64) % 2).astype(np.int32).tobytes())
        for name in ("w1", "w3", "w2"):
            q, z, s = packed[p + name + ".weight"]
            if name == "w2":
                q = q[:, order]
            else:
                q, z, s = q[order], z[:, order], s[:, order]
            for k, v in gptq_pack(q, z, s, 32).items():
                plain[p + name + "." + k] = v
    write_raw(folder / "model.safetensors", t)
    (tmp_path / "plain").mkdir()
    write_raw(tmp_path / "plain" / "model.safetensors", plain)
    (tmp_path / "plain" / "config.json").write_text((folder / "config.json").read_text())
    a = moefuse.MoeLayer.from_pretrained(folder, layer=0, threads=2)
    b = moefuse.MoeLayer.from_pretrained(tmp_path / "plain", layer=0, threads=2)
    assert "w13_perm" not in a.weights()  # down's order needs no gather
    x = tokens("f16", 7, 3)
    for prefill in (False, True):
        assert np.asarray(a(x, prefill)).tobytes() == np.asarray(b(x, prefill)).tobytes()
    assert np.asarray(a(x)).tobytes() == np.asarray(moefuse.reference_layer_forward(a, x)).tobytes()


def test_awq_folder_holds_the_values_packed_and_runs_as_gptq(tmp_path):
    """An AWQ folder (quant_method "awq", AutoAWQ's GEMM packing written above with numpy) holds exactly the values
    packed, and runs bitwise as the GPTQ folder of the same values; other AWQ versions are refused naming the key."""
    awq = {"bits": 4, "group_size": 32, "quant_method": "awq", "version": "GEMM", "zero_point": True}
    (tmp_path / "awq").mkdir()
    (tmp_path / "gptq").mkdir()
    a_dir, packed = gptq_folder(tmp_path / "awq", "qwen2_moe", sym=False, quantization=awq, pack=awq_pack)
    g_dir, _ = gptq_folder(tmp_path / "gptq", "qwen2_moe", sym=False)
    info = moefuse.model_config(a_dir)
    assert info["quant_mode"] == "w4a16"
    assert info["gptq"]["quant_method"] == "awq" and info["gptq"]["sym"] is False
    for layer in FAMILIES["qwen2_moe"][0]:
        a = moefuse.MoeLayer.from_pretrained(a_dir, layer=layer, threads=2)
        b = moefuse.MoeLayer.from_pretrained(g_dir, layer=layer, threads=2)
        q, z, s = packed[f"model.layers.{layer}.mlp.experts.3.down_proj.weight"]
        w = a.weights()
        assert np.array_equal(np.asarray(w["w2"])[3], q)
        assert np.array_equal(np.asarray(w["w2_zero"])[3], z.T)
        assert np.array_equal(np.asarray(w["w2_scale"])[3], s.T)
        x = tokens("bf16", 6, layer)
        assert np.asarray(a(x)).tobytes() == np.asarray(b(x)).tobytes()
    (tmp_path / "gemv").mkdir()
    f, _ = gptq_folder(tmp_path / "gemv", "qwen2_moe", quantization=dict(awq, version="gemv"), pack=awq_pack)
    with pytest.raises(ValueError, match=r"config\.json: quantization_config\.version: expected \"gemm\""):
        moefuse.MoeLayer.from_pretrained(f, layer=1)
