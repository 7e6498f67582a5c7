"""MoeLayer.from_pretrained(DIR, layer=L) on the model folders of tests/data/models/ (written by transformers'
save_pretrained): no config needed, bitwise the layer read with an explicit config dict; moefuse.model_config."""

import pathlib

import numpy as np
import pytest

import moefuse
from mf_testutil import read_safetensors_raw

MODELS = pathlib.Path(__file__).resolve().parents[1] / "data" / "models"


def cfg(model_type, E, K, I, dtype, **extra):
    m = dict(model_type=model_type, num_experts=E, num_experts_per_tok=K, hidden_size=32, moe_intermediate_size=I,
             scoring_func="softmax", norm_topk_prob=False, dtype=dtype)
    m.update(extra)
    return {"model_config": m}


# Written from tests/data/models/make_models.py's parameters, independently of config.json.
FAMILIES = {
    "qwen3_moe": ([0, 2], cfg("qwen3_moe", 8, 2, 16, "bf16", norm_topk_prob=True)),
    "qwen2_moe": ([1, 3], cfg("qwen2_moe", 6, 2, 16, "bf16", shared_expert_intermediate_size=32)),
    "olmoe": ([0, 1], cfg("olmoe", 8, 3, 16, "f32")),
    "mixtral": ([0, 1], cfg("mixtral", 4, 2, 16, "f16", norm_topk_prob=True)),
    "deepseek_v2": ([1, 2], cfg("deepseek_v2", 8, 3, 16, "bf16", n_shared_experts=2, n_group=4, topk_group=2,
                                routed_scaling_factor=1.5)),
    "deepseek_v3": ([1, 2], cfg("deepseek_v3", 8, 2, 16, "bf16", n_shared_experts=1, n_group=4, topk_group=2,
                                routed_scaling_factor=2.5, scoring_func="sigmoid", norm_topk_prob=True)),
}


def checkpoint_of(folder):
    single = folder / "model.safetensors"
    return single if single.exists() else folder / "model.safetensors.index.json"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_folder_needs_no_config_and_equals_the_explicit_config(family):
    folder = MODELS / family
    layers, explicit = FAMILIES[family]
    info = moefuse.model_config(folder)
    assert info["moe_layers"] == layers
    assert info["quant_mode"] == "none"
    assert info["config"] == moefuse.load_config(explicit)
    for layer in layers:
        a = moefuse.MoeLayer.from_pretrained(folder, layer=layer, threads=2)
        b = moefuse.MoeLayer.from_pretrained(checkpoint_of(folder), layer, explicit, threads=2)
        x = np.random.default_rng(layer).standard_normal((11, 32)).astype(np.float32)
        ya = a(a_input(a, x))
        yb = b(a_input(b, x))
        assert np.asarray(ya).tobytes() == np.asarray(yb).tobytes()


def a_input(layer, x):
    dtype = layer.config["model_config"]["dtype"]
    if dtype == "f32":
        return x
    if dtype == "f16":
        return x.astype(np.float16)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return x.astype(ml_dtypes.bfloat16)


def test_folder_errors_name_the_moe_layers_and_keys():
    with pytest.raises(ValueError, match=r"--layer: expected one of the MoE layers 1, 2 \(of 3 decoder layers\), "
                                         r"got 0 \(a dense layer\)"):
        moefuse.MoeLayer.from_pretrained(MODELS / "deepseek_v3", layer=0)
    layers, explicit = FAMILIES["qwen3_moe"]
    bad = {"model_config": dict(explicit["model_config"], num_experts=4)}
    with pytest.raises(ValueError, match=r"model_config.num_experts: expected 8 \(as .*config.json says\), got 4"):
        moefuse.MoeLayer.from_pretrained(MODELS / "qwen3_moe", layer=0, config=bad)
    # execution keys from a config given beside the folder
    options = {"exe_mode": "eager", "model_config": dict(explicit["model_config"], moe_chunk_max_len=2)}
    layer = moefuse.MoeLayer.from_pretrained(MODELS / "qwen3_moe", layer=2, config=options)
    assert layer.config["exe_mode"] == "eager"
    assert layer.config["model_config"]["moe_chunk_max_len"] == 2


def test_model_config_errors(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    with pytest.raises(ValueError, match=r"model_type: expected one of the MoE families moefuse reads: deepseek_v2, "
                                         r"deepseek_v3, mixtral, olmoe, qwen2_moe, qwen3_moe, got \"llama\""):
        moefuse.model_config(tmp_path)
    with pytest.raises(OSError):
        moefuse.model_config(tmp_path / "absent")


def _e4m3(q):
    """float8 e4m3fn bytes -> float32, by the format's definition."""
    q = q.astype(np.int64)
    sign = np.where(q & 0x80, -1.0, 1.0)
    e, m = (q >> 3) & 15, q & 7
    value = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    value = np.where((e == 15) & (m == 7), np.nan, value)
    return (sign * value).astype(np.float32)


@pytest.mark.parametrize("folder,layer,block", [("qwen3_moe_fp8", 2, (128, 128)), ("deepseek_v3_fp8", 1, (8, 12))])
def test_fp8_folder_is_the_dequantise_then_bf16_oracle(folder, layer, block):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    info = moefuse.model_config(MODELS / folder)
    assert info["fp8_weight_block"] == list(block)
    assert info["quant_mode"] == "none"
    a = moefuse.MoeLayer.from_pretrained(MODELS / folder, layer=layer, threads=2)
    tensors = {}
    for f in sorted((MODELS / folder).glob("*.safetensors")):
        tensors.update(read_safetensors_raw(f))
    bn, bk = block
    w13 = a.weights()["w13"]
    I = w13.shape[1] // 2
    for e in range(w13.shape[0]):
        for proj, rows in (("gate_proj", slice(0, I)), ("up_proj", slice(I, 2 * I))):
            name = f"model.layers.{layer}.mlp.experts.{e}.{proj}.weight"
            dtype, shape, raw = tensors[name]
            assert dtype == "F8_E4M3"
            q = _e4m3(np.frombuffer(raw, np.uint8).reshape(shape))
            s = np.frombuffer(tensors[name + "_scale_inv"][2], np.float32).reshape(tensors[name + "_scale_inv"][1])
            full = np.repeat(np.repeat(s, bn, axis=0), bk, axis=1)[:shape[0], :shape[1]]
            want = (q * full).astype(ml_dtypes.bfloat16)  # fp32 product, one RNE rounding to bf16
            assert want.tobytes() == w13[e, rows].tobytes()
    x = np.random.default_rng(layer).standard_normal((7, 32)).astype(ml_dtypes.bfloat16)
    assert np.asarray(a(x)).tobytes() == np.asarray(moefuse.reference_layer_forward(a, x)).tobytes()


def test_fp8_activations_from_python():
    """fp8_activations: dynamic_1x128 given beside an FP8 folder (an execution key; the C++ tests check it bitwise
    against the plain-loop definition): it shows in the layer's config, decode and prefill give the same bits, and
    the output stays close to the bf16-activation layer's (int8-like activation error only)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    folder = MODELS / "qwen3_moe_fp8"
    config = moefuse.model_config(folder)["config"]
    config["model_config"]["fp8_activations"] = "dynamic_1x128"
    a = moefuse.MoeLayer.from_pretrained(folder, layer=2, config=config, threads=2)
    plain = moefuse.MoeLayer.from_pretrained(folder, layer=2, threads=2)
    assert a.config["model_config"]["fp8_activations"] == "dynamic_1x128"
    assert "fp8_activations" not in plain.config["model_config"]
    x = np.random.default_rng(5).standard_normal((9, 32)).astype(ml_dtypes.bfloat16)
    y = np.asarray(a(x)).astype(np.float32)
    assert np.asarray(a(x, is_prefill=True)).astype(np.float32).tobytes() == y.tobytes()
    y0 = np.asarray(plain(x)).astype(np.float32)
    assert y.tobytes() != y0.tobytes()
    cos = (y * y0).sum(1) / np.sqrt((y * y).sum(1) * (y0 * y0).sum(1))
    assert cos.min() > 0.99, cos
