"""The numerics tier from Python (docs/layer.md §2, "Numerics tier"): numerics= on MoeLayer.from_config and
from_pretrained over the config's ``numerics`` key over the process default (MOEFUSE_NUMERICS, which conftest.py sets
to portable for the suites), the layer's ``numerics`` property, the native tier within the tolerance of the oracle
with the routing exact and — on a machine without the amx level — bitwise the portable tier, and the errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

import moefuse
from moefuse import _core
from test_layer import hf_tensors, raw, small, tokens, write_safetensors


def token_rel_l2(y, ref):
    a = np.asarray(y, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    return np.sqrt(((a - b) ** 2).sum(axis=1)) / np.sqrt((b ** 2).sum(axis=1))


def test_numerics_argument_over_the_config_key_over_the_default():
    d = small("qwen3-30b-a3b", "bf16")
    assert moefuse.MoeLayer.from_config(d, seed=1, threads=1).numerics == "portable"  # conftest.py's default
    for tier in ("native", "portable"):
        assert moefuse.MoeLayer.from_config(d, seed=1, threads=1, numerics=tier).numerics == tier
        keyed = dict(d, numerics=tier)
        assert moefuse.load_config(keyed)["numerics"] == tier
        assert moefuse.MoeLayer.from_config(keyed, seed=1, threads=1).numerics == tier
        other = "portable" if tier == "native" else "native"
        assert moefuse.MoeLayer.from_config(keyed, seed=1, threads=1, numerics=other).numerics == other
    assert "numerics" not in moefuse.load_config(d)  # unset: not in the dict, as to_yaml leaves it out


def test_native_is_within_the_tolerance_of_the_oracle_with_exact_routing():
    for d in (small("qwen3-30b-a3b", "f32"), small("deepseek-v3", "f32"), small("mixtral-8x7b", "f32", "none")):
        layer = moefuse.MoeLayer.from_config(d, seed=2, threads=2, numerics="native")
        x = tokens(3, 9, 64, "f32")
        for prefill in (False, True):
            y = layer(x, is_prefill=prefill)
            ref = moefuse.reference_layer_forward(layer, x)
            assert token_rel_l2(y, ref).max() <= 2.0 ** -6


def test_native_is_portable_without_the_amx_level(tmp_path):
    if _core._amx_in_use():  # pragma: no cover - machine-dependent
        pytest.skip("the amx level is in use: native runs bf16 weights on AMX-BF16, whose bits portable does not give")
    d = small("deepseek-v2-lite", "f32")
    x = tokens(4, 7, 64, "f32")
    native = moefuse.MoeLayer.from_config(d, seed=5, threads=2, numerics="native")
    portable = moefuse.MoeLayer.from_config(d, seed=5, threads=2, numerics="portable")
    for prefill in (False, True):
        np.testing.assert_array_equal(raw(native(x, prefill)), raw(portable(x, prefill)))
    # from_pretrained takes it too.
    path = write_safetensors(tmp_path / "f32.safetensors", hf_tensors(d, native.weights(), 0))
    loaded = moefuse.MoeLayer.from_pretrained(path, 0, d, threads=1, numerics="native")
    assert loaded.numerics == "native"
    np.testing.assert_array_equal(raw(loaded(x)), raw(portable(x)))
    assert moefuse.MoeLayer.from_pretrained(path, 0, d, threads=1).numerics == "portable"


def test_bad_numerics_arguments():
    d = small("olmoe-1b-7b", "f32")
    with pytest.raises(ValueError, match=r"MoeLayer.from_config: numerics: expected 'native', 'portable' or None, "
                                         r"got 'fast'"):
        moefuse.MoeLayer.from_config(d, numerics="fast")
    with pytest.raises(TypeError, match=r"MoeLayer.from_pretrained: numerics: expected 'native', 'portable' or None, "
                                        r"got int"):
        moefuse.MoeLayer.from_pretrained("x.safetensors", 0, d, numerics=1)
    with pytest.raises(ValueError, match=r'config dict: numerics: expected native or portable, got the string "fast"'):
        moefuse.load_config(dict(d, numerics="fast"))


def run_python(code, value):
    env = dict(os.environ)
    if value is None:
        env.pop("MOEFUSE_NUMERICS", None)
    else:
        env["MOEFUSE_NUMERICS"] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_process_default_comes_from_moefuse_numerics():
    code = ("import moefuse; d = moefuse.load_config('default'); d['model_config'].update(hidden_size=64, "
            "moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2); "
            "print(moefuse.MoeLayer.from_config(d, threads=1).numerics)")
    for value, tier in ((None, "native"), ("", "native"), ("native", "native"), ("portable", "portable")):
        r = run_python(code, value)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == tier, value
    r = run_python(code, "exact")
    assert r.returncode != 0
    assert 'MOEFUSE_NUMERICS: expected native or portable, got "exact"' in r.stderr
