"""moefuse.MoeLayer against the independent numpy oracle of layer_oracle.py (per token, per expert, the rounding
points of docs/layer.md §1, router and gating written in numpy): every model family, in f32 / bf16 / f16 and the
w8a8 / w8a8c8 chains, decode (the fused path where it applies) and prefill, bit for bit."""

import numpy as np
import pytest

import moefuse
from layer_oracle import layer_forward
from mf_testutil import ml_dtypes

PRESETS = ["deepseek-v2-lite", "deepseek-v3", "mixtral-8x7b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b"]
CHAINS = [("f32", "none"), ("bf16", "none"), ("f16", "none"), ("bf16", "w8a8"), ("f16", "w8a8"), ("bf16", "w8a8c8")]


def small(preset, dtype, quant):
    """A preset shrunk to test size (H 64, I 32, qwen2_moe's shared expert 48), its routing kept."""
    d = moefuse.load_config(preset)
    m = d["model_config"]
    m.update(hidden_size=64, moe_intermediate_size=32, dtype=dtype, quant_mode=quant)
    if m["shared_expert_intermediate_size"] > 0:
        m["shared_expert_intermediate_size"] = 48
    return d


def model_tokens(seed, T, dtype):
    x = np.random.default_rng(seed).normal(size=(T, 64)).astype(np.float32)
    if dtype == "bf16":
        if ml_dtypes is None:
            pytest.skip("bf16 numpy arrays need ml_dtypes")
        return x.astype(ml_dtypes.bfloat16)
    return x.astype({"f32": np.float32, "f16": np.float16}[dtype])


def assert_same_f32_bits(actual, expected, msg):
    a = np.ascontiguousarray(np.asarray(actual, np.float32)).view(np.uint32)
    e = np.ascontiguousarray(np.asarray(expected, np.float32)).view(np.uint32)
    if not np.array_equal(a, e):
        i = tuple(np.argwhere(a != e)[0])
        raise AssertionError(f"{msg}: {int((a != e).sum())} of {a.size} differ; first at {i}")


@pytest.mark.parametrize("dtype,quant", CHAINS, ids=[f"{d}-{q}" for d, q in CHAINS])
@pytest.mark.parametrize("preset", PRESETS)
def test_the_layer_equals_the_numpy_oracle_bitwise(preset, dtype, quant):
    d = small(preset, dtype, quant)
    layer = moefuse.MoeLayer.from_config(d, seed=7, threads=2)
    x = model_tokens(11, 4, dtype)
    expected, _ = layer_forward(d, layer.weights(), x)
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0.01
    assert_same_f32_bits(layer(x), expected, "decode")
    assert_same_f32_bits(layer(x, is_prefill=True), expected, "prefill")


def test_the_numpy_oracle_sees_a_wrong_router():
    # The comparison can fail: the oracle run on weights whose router differs in one row gives another output.
    d = small("qwen3-30b-a3b", "f32", "none")
    layer = moefuse.MoeLayer.from_config(d, seed=7)
    x = model_tokens(11, 4, "f32")
    w = dict(layer.weights())
    w["router"] = w["router"].copy()
    w["router"][0] = -w["router"][0]
    wrong, _ = layer_forward(d, w, x)
    with pytest.raises(AssertionError, match="differ"):
        assert_same_f32_bits(layer(x), wrong, "wrong router")
