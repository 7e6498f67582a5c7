"""examples/torch_npu_chain.py (code written for Ascend's torch_npu, run through moefuse.torch_npu) against a plain
PyTorch MoE block: Hugging Face's DeepseekV3MoE routing (sigmoid, correction bias, top-2-sum group scores, top-k,
renormalisation, scaling) and a loop over the experts."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "torch_npu_chain.py"


def load_example():
    spec = importlib.util.spec_from_file_location("torch_npu_chain", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_moe(hidden, m):
    """Hugging Face's DeepseekV3MoE forward, written out with plain PyTorch operations."""
    N = hidden.shape[0]
    E = m["gate_proj"].shape[0]
    logits = F.linear(hidden.float(), m["gate"])
    scores = logits.sigmoid()
    scores_for_choice = scores + m["e_score_correction_bias"].unsqueeze(0)
    group_scores = scores_for_choice.view(N, m["n_group"], -1).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=m["topk_group"], dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(N, m["n_group"], E // m["n_group"]).reshape(N, -1)
    tmp_scores = scores_for_choice.masked_fill(~score_mask.bool(), float("-inf"))
    topk_idx = torch.topk(tmp_scores, k=m["top_k"], dim=-1, sorted=False)[1]
    topk_weight = scores.gather(1, topk_idx)
    topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
    topk_weight = topk_weight * m["routed_scaling_factor"]

    out = torch.zeros(hidden.shape, dtype=torch.float32)
    for e in range(E):
        token, slot = torch.where(topk_idx == e)
        if token.numel() == 0:
            continue
        h = hidden[token]
        y = F.linear(F.silu(F.linear(h, m["gate_proj"][e])) * F.linear(h, m["up_proj"][e]), m["down_proj"][e])
        out.index_add_(0, token, y.float() * topk_weight[token, slot].unsqueeze(-1))
    shared = F.linear(F.silu(F.linear(hidden, m["shared_gate"])) * F.linear(hidden, m["shared_up"]),
                      m["shared_down"])
    return (out + shared.float()).to(hidden.dtype), topk_idx


@pytest.mark.parametrize("N", [1, 7, 64])
def test_chain_matches_a_plain_pytorch_moe_block_in_float32(N):
    ex = load_example()
    m = ex.make_model(seed=N)
    hidden = torch.randn(N, 64, generator=torch.Generator().manual_seed(100 + N))
    out = ex.moe_forward(hidden, m)
    ref, ref_idx = reference_moe(hidden, m)
    # the same experts are chosen (the order within a token differs: torch.topk(sorted=False))
    _, idx, _ = ex.torch_npu.npu_moe_gating_top_k(
        F.linear(hidden, m["gate"]), m["top_k"], bias=m["e_score_correction_bias"], k_group=m["topk_group"],
        group_count=m["n_group"], group_select_mode=1, norm_type=1, routed_scaling_factor=2.5)
    assert torch.equal(idx.long().sort(dim=-1)[0], ref_idx.sort(dim=-1)[0])
    assert out.dtype == torch.float32 and out.shape == (N, 64)
    # float32 everywhere: only summation orders differ
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_chain_matches_a_plain_pytorch_moe_block_in_bfloat16():
    ex = load_example()
    m = ex.make_model(dtype=torch.bfloat16, seed=3)
    hidden = torch.randn(32, 64, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    out = ex.moe_forward(hidden, m)
    ref, _ = reference_moe(hidden, m)
    assert out.dtype == torch.bfloat16
    # bf16 intermediates are rounded at different places in the two (moefuse: once per operator, from fp32)
    scale = ref.float().abs().max()
    torch.testing.assert_close(out.float(), ref.float(), rtol=0.02, atol=0.02 * float(scale))


def test_example_runs_as_a_script():
    r = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "torch.float32" in r.stdout and "torch.bfloat16" in r.stdout


MODELS = EXAMPLE.parents[1] / "tests" / "data" / "models"


def test_chain_on_a_model_folder_matches_moefuse_layer():
    pytest.importorskip("ml_dtypes")
    ex = load_example()
    for layer in (1, 2):
        model, moe = ex.load_model(str(MODELS / "deepseek_v3"), layer)
        hidden = torch.randn(16, 32, generator=torch.Generator().manual_seed(layer)).to(torch.bfloat16)
        out = ex.moe_forward(hidden, model)
        ref = moe(hidden)
        # the routed part is the same operator chain; the shared expert runs in plain PyTorch bf16 in the example
        scale = ref.float().abs().max()
        torch.testing.assert_close(out.float(), ref.float(), rtol=0.02, atol=0.02 * float(scale))


def test_example_runs_on_a_model_folder():
    pytest.importorskip("ml_dtypes")
    r = subprocess.run([sys.executable, str(EXAMPLE), str(MODELS / "deepseek_v3"), "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "layer 2: out (10, 32) torch.bfloat16, max |diff|" in r.stdout


def test_readme_example_runs():
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert out.shape == (4, 64) and out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
