"""A DeepSeek-V3-style MoE block written for Ascend's torch_npu, running unchanged on a CPU with moefuse.

The chain is the one of cann-recipes' TP-mode MoE:
  1. gating           npu_moe_gating_top_k (sigmoid scores, correction bias, group filter, renormalised top-k)
  2. routing          npu_moe_init_routing_v2 (tokens sorted by expert, per-expert counts)
  3. routed experts   npu_grouped_matmul (gate|up) -> npu_swiglu -> npu_grouped_matmul (down)
  4. combine          npu_moe_finalize_routing, with the shared expert's output fused in as skip1

On Ascend the import below reads `import torch_npu`; that line is the only difference.

    python examples/torch_npu_chain.py                       # random DeepSeek-V3-shaped weights
    python examples/torch_npu_chain.py MODEL_DIR [LAYER]     # a DeepSeek-V3 model folder as shipped (config.json +
                                                             # safetensors), e.g. tests/data/models/deepseek_v3 1

With a folder, the weights and the routing parameters come from the folder itself (moefuse.MoeLayer.from_pretrained
reads its config.json), and the chain's output is compared with moefuse's own layer on the same tokens.
"""

import sys
import time

import torch
import torch.nn.functional as F

import moefuse.torch_npu as torch_npu  # on Ascend: import torch_npu


def moe_forward(hidden, model):
    """hidden [N, H] -> [N, H]: the routed experts (through torch_npu's fused operators) plus the shared expert."""
    N, H = hidden.shape
    E, top_k = model["w13"].shape[0], model["top_k"]

    # 1. gating: fp32 router logits, as DeepSeek computes them
    logits = F.linear(hidden.float(), model["gate"])
    topk_weight, topk_idx, _ = torch_npu.npu_moe_gating_top_k(
        logits, k=top_k, bias=model["e_score_correction_bias"], k_group=model["topk_group"],
        group_count=model["n_group"], group_select_mode=1, renorm=0, norm_type=1,
        routed_scaling_factor=model["routed_scaling_factor"], eps=1e-20)

    # 2. routing: rows of hidden sorted by expert; tokens_per_expert[e] = rows for expert e
    expanded_x, expanded_row_idx, tokens_per_expert, _ = torch_npu.npu_moe_init_routing_v2(
        hidden, expert_idx=topk_idx, active_num=N * top_k, expert_num=E, expert_tokens_num_type=1,
        expert_tokens_num_flag=True, active_expert_range=[0, E], quant_mode=-1)

    # 3. the routed experts: [gate | up] projection, SwiGLU, down projection
    gate_up = torch_npu.npu_grouped_matmul([expanded_x], [model["w13"]], group_list=tokens_per_expert,
                                           group_type=0, group_list_type=1, split_item=3)[0]
    activated = torch_npu.npu_swiglu(gate_up)
    down = torch_npu.npu_grouped_matmul([activated], [model["w2"]], group_list=tokens_per_expert,
                                        group_type=0, group_list_type=1, split_item=3)[0]

    # the shared expert, in plain PyTorch
    shared = F.linear(F.silu(F.linear(hidden, model["shared_gate"])) * F.linear(hidden, model["shared_up"]),
                      model["shared_down"])

    # 4. combine: out[n] = shared[n] + sum_k weight[n, k] * down[row of (n, k)]
    return torch_npu.npu_moe_finalize_routing(
        down, skip1=shared, skip2=None, bias=None, scales=topk_weight.to(down.dtype),
        expanded_src_to_dst_row=expanded_row_idx, export_for_source_row=None, drop_pad_mode=2)


def make_model(hidden_size=64, intermediate_size=32, n_experts=16, n_group=4, topk_group=2, top_k=4,
               routed_scaling_factor=2.5, dtype=torch.float32, seed=0):
    """Random weights in Hugging Face's layout (gate_proj / up_proj [I, H], down_proj [H, I] per expert), packed the
    way Ascend recipes pack them: w13 = [gate | up] stacked to [E, 2I, H] and w2 = [E, H, I], both passed as
    .transpose(1, 2) views ([E, H, 2I] and [E, I, H]), which moefuse reads in place."""
    g = torch.Generator().manual_seed(seed)
    H, I, E = hidden_size, intermediate_size, n_experts

    def w(*shape, scale):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    gate_proj, up_proj = w(E, I, H, scale=H ** -0.5), w(E, I, H, scale=H ** -0.5)
    down_proj = w(E, H, I, scale=I ** -0.5)
    return {
        "gate": torch.randn(E, H, generator=g) * H ** -0.5,  # router weight, fp32
        "e_score_correction_bias": torch.randn(E, generator=g) * 0.1,  # fp32
        "gate_proj": gate_proj, "up_proj": up_proj, "down_proj": down_proj,
        "w13": torch.cat([gate_proj, up_proj], dim=1).transpose(1, 2),
        "w2": down_proj.transpose(1, 2),
        "shared_gate": w(I, H, scale=H ** -0.5), "shared_up": w(I, H, scale=H ** -0.5),
        "shared_down": w(H, I, scale=I ** -0.5),
        "n_group": n_group, "topk_group": topk_group, "top_k": top_k,
        "routed_scaling_factor": routed_scaling_factor,
    }


def _torch(a):
    """A numpy array (ml_dtypes.bfloat16 included) as a torch tensor of the same dtype."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view("uint16").astype("int16")).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def load_model(folder, layer):
    """MoE layer `layer` of a DeepSeek-V3 model folder, in make_model's form, and moefuse's layer for it."""
    import moefuse

    moe = moefuse.MoeLayer.from_pretrained(folder, layer)
    c = moe.config["model_config"]
    if c["model_type"] != "deepseek_v3":
        raise SystemExit(f"{folder}: expected a deepseek_v3 model (this chain is DeepSeek-V3's), got {c['model_type']}")
    w = {k: _torch(v) for k, v in moe.weights().items()}
    I, Is = c["moe_intermediate_size"], w["shared_w2"].shape[2]
    model = {
        "gate": w["router"].float(), "e_score_correction_bias": w["router_bias"],
        "gate_proj": w["w13"][:, :I], "up_proj": w["w13"][:, I:], "down_proj": w["w2"],
        "w13": w["w13"].transpose(1, 2), "w2": w["w2"].transpose(1, 2),
        "shared_gate": w["shared_w13"][0, :Is], "shared_up": w["shared_w13"][0, Is:], "shared_down": w["shared_w2"][0],
        "n_group": c["n_group"], "topk_group": c["topk_group"], "top_k": c["num_experts_per_tok"],
        "routed_scaling_factor": c["routed_scaling_factor"],
    }
    return model, moe


def run_folder(folder, layer):
    model, moe = load_model(folder, layer)
    H = model["w13"].shape[1]
    dtype = model["w13"].dtype
    hidden = torch.randn(10, H, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = moe_forward(hidden, model)
    ref = moe(hidden)
    diff = (out.float() - ref.float()).abs().max()
    print(f"{folder} layer {layer}: out {tuple(out.shape)} {out.dtype}, max |diff| to moefuse's layer "
          f"{float(diff):.4g} (|out| max {float(ref.float().abs().max()):.4g})")


def main():
    if len(sys.argv) > 1:
        run_folder(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
        return
    for dtype in (torch.float32, torch.bfloat16):
        model = make_model(dtype=dtype)
        hidden = torch.randn(10, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
        start = time.perf_counter()
        out = moe_forward(hidden, model)
        ms = (time.perf_counter() - start) * 1e3
        print(f"{str(dtype):15} out {tuple(out.shape)} {out.dtype}, |out| mean {out.float().abs().mean():.4f}, "
              f"{ms:.1f} ms")


if __name__ == "__main__":
    main()
