"""Writes the tiny model folders of tests/data/models/ with transformers' own save_pretrained, one per MoE family
moefuse reads from config.json (docs/layer.md §7): qwen3_moe, qwen2_moe, olmoe, mixtral, deepseek_v2, deepseek_v3.

Not run by CI (it needs torch and transformers, several GB): the folders it wrote are committed, a few tens of
kilobytes each. Rerun it to regenerate them (the values come from a fixed seed, so the files are the same for the
same torch and transformers versions):

    python -m venv /tmp/tf && /tmp/tf/bin/pip install torch "transformers<5" safetensors
    /tmp/tf/bin/python tests/data/models/make_models.py            # writes tests/data/models/<family>/
    /tmp/tf/bin/python tests/data/models/make_models.py "" deepseek_v3_fp8   # only one folder ("" = here)

The FP8 folders (qwen3_moe_fp8, deepseek_v3_fp8) are made from the float ones of the same family (write_fp8 below).

Shapes are tiny (H 32, expert width 16, a handful of experts and layers) but each folder exercises its family's
keys: dense layers among the MoE ones (mlp_only_layers, decoder_sparse_step, first_k_dense_replace), shared
experts, expert groups, a scaling factor, deepseek_v3's correction bias. The weights are drawn again after
transformers' initialisation with standard deviation 1/sqrt(fan_in) (transformers' 0.02 would make every router
logit nearly equal), and deepseek_v3's correction bias, which transformers initialises to zero, is drawn too.
"""

import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))

# Attention and vocabulary kept as small as each config class allows: only the MoE blocks are read by moefuse.
COMMON = dict(vocab_size=32, hidden_size=32, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
              tie_word_embeddings=False)

FAMILIES = {
    "qwen3_moe": (transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM,
                  dict(head_dim=16, intermediate_size=48, num_hidden_layers=3, num_experts=8, num_experts_per_tok=2,
                       moe_intermediate_size=16, norm_topk_prob=True, mlp_only_layers=[1]), torch.bfloat16),
    "qwen2_moe": (transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM,
                  dict(intermediate_size=48, num_hidden_layers=4, num_experts=6, num_experts_per_tok=2,
                       moe_intermediate_size=16, shared_expert_intermediate_size=32, decoder_sparse_step=2),
                  torch.bfloat16),
    "olmoe": (transformers.OlmoeConfig, transformers.OlmoeForCausalLM,
              dict(intermediate_size=16, num_hidden_layers=2, num_experts=8, num_experts_per_tok=3), torch.float32),
    "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM,
                dict(head_dim=16, intermediate_size=16, num_hidden_layers=2, num_local_experts=4,
                     num_experts_per_tok=2), torch.float16),
    "deepseek_v2": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM,
                    dict(intermediate_size=48, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8,
                         n_shared_experts=2, num_experts_per_tok=3, moe_intermediate_size=16,
                         topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=1.5,
                         kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=16, qk_rope_head_dim=8,
                         v_head_dim=16), torch.bfloat16),
    "deepseek_v3": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM,
                    dict(intermediate_size=48, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8,
                         n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=16, n_group=4,
                         topk_group=2, routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=24,
                         qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16), torch.bfloat16),
}


def write(name: str, out_root: str) -> None:
    config_class, model_class, keys, dtype = FAMILIES[name]
    torch.manual_seed(sum(map(ord, name)))
    model = model_class(config_class(**COMMON, **keys))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            p.copy_(torch.randn_like(p) / fan_in ** 0.5 if p.dim() > 1 else 1 + 0.1 * torch.randn_like(p))
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):
                b.copy_((torch.rand_like(b) - 0.5) * 0.1)
    model = model.to(dtype)
    out = os.path.join(out_root, name)
    # Two families sharded as large models are (model-0000k-of-0000n.safetensors + model.safetensors.index.json).
    shard = "40KB" if name in ("qwen2_moe", "deepseek_v3") else "5GB"
    model.save_pretrained(out, safe_serialization=True, max_shard_size=shard)
    for extra in ("generation_config.json",):  # not read by moefuse; keeps the test data small
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)
    print(f"{out}: {sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))} bytes")


# FP8 block-scaled folders, as DeepSeek-V3/R1 and the Qwen3 FP8 releases ship them: every routed and shared expert
# projection "*.weight" in float8_e4m3fn with "*.weight_scale_inv" (f32, [ceil(N / bn), ceil(K / bk)]: w = q *
# scale_inv per bn x bk block), everything else as the float folder has it, and config.json's quantization_config.
# qwen3_moe_fp8 keeps the shipped block [128, 128] (one block per tiny matrix); deepseek_v3_fp8 uses [8, 12] so that
# each matrix has several blocks, K not a multiple of bk among them (32 = 2 * 12 + 8, 16 = 12 + 4).
FP8 = {"qwen3_moe_fp8": ("qwen3_moe", [128, 128]), "deepseek_v3_fp8": ("deepseek_v3", [8, 12])}
FP8_MAX = 448.0  # the largest float8_e4m3fn


def is_expert_projection(name: str) -> bool:
    return ".mlp.experts." in name or ".mlp.shared_experts." in name or ".mlp.shared_expert." in name


def quantize_fp8(w: torch.Tensor, block: list) -> tuple:
    """Block-scaled e4m3 as the releases are made: scale_inv = amax / 448 per block, q = e4m3(w / scale_inv)."""
    bn, bk = block
    n, k = w.shape
    sn, sk = -(-n // bn), -(-k // bk)
    wf = w.float()
    scale_inv = torch.empty(sn, sk, dtype=torch.float32)
    q = torch.empty(n, k, dtype=torch.float8_e4m3fn)
    for i in range(sn):
        for j in range(sk):
            blk = wf[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
            s = blk.abs().max().clamp(min=1e-12) / FP8_MAX
            scale_inv[i, j] = s
            q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = (blk / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale_inv


def write_fp8(name: str, out_root: str) -> None:
    family, block = FP8[name]
    src = os.path.join(out_root, family)
    out = os.path.join(out_root, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    index_path = os.path.join(src, "model.safetensors.index.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else None
    files = sorted(set(index["weight_map"].values())) if index else ["model.safetensors"]
    total = 0
    for f in files:
        tensors = load_file(os.path.join(src, f))
        written = {}
        for tname, t in tensors.items():
            if is_expert_projection(tname) and tname.endswith(".weight"):
                q, s = quantize_fp8(t, block)
                written[tname], written[tname + "_scale_inv"] = q, s
                if index:
                    index["weight_map"][tname + "_scale_inv"] = f
            else:
                written[tname] = t
        total += sum(t.numel() * t.element_size() for t in written.values())
        save_file(written, os.path.join(out, f), metadata={"format": "pt"})
    if index:
        index["metadata"]["total_size"] = total
        index["weight_map"] = dict(sorted(index["weight_map"].items()))
        json.dump(index, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2, sort_keys=True)
    config = json.load(open(os.path.join(src, "config.json")))
    config["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                     "weight_block_size": block}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2, sort_keys=True)
    print(f"{out}: {sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))} bytes")


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else HERE
    for family in sys.argv[2:] or list(FAMILIES) + list(FP8):
        if family in FP8:
            write_fp8(family, root)
        else:
            write(family, root)
