"""Writes the tiny model folders of tests/data/models/ with transformers' own save_pretrained, one per MoE family
moefuse reads from config.json (docs/layer.md §7): qwen3_moe, qwen2_moe, olmoe, mixtral, deepseek_v2, deepseek_v3.

Not run by CI (it needs torch and transformers, several GB): the folders it wrote are committed, a few tens of
kilobytes each. Rerun it to regenerate them (the values come from a fixed seed, so the files are the same for the
same torch and transformers versions):

    python -m venv /tmp/tf && /tmp/tf/bin/pip install torch "transformers<5" safetensors
    /tmp/tf/bin/python tests/data/models/make_models.py            # writes tests/data/models/<family>/

Shapes are tiny (H 32, expert width 16, a handful of experts and layers) but each folder exercises its family's
keys: dense layers among the MoE ones (mlp_only_layers, decoder_sparse_step, first_k_dense_replace), shared
experts, expert groups, a scaling factor, deepseek_v3's correction bias. The weights are drawn again after
transformers' initialisation with standard deviation 1/sqrt(fan_in) (transformers' 0.02 would make every router
logit nearly equal), and deepseek_v3's correction bias, which transformers initialises to zero, is drawn too.
"""

import os
import sys

import torch
import transformers

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


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else HERE
    for family in sys.argv[2:] or FAMILIES:
        write(family, root)
