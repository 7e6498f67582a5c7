"""A stand-in for Ascend's torch_npu, limited to its MoE fused operators, running on the CPU.

    import moefuse.torch_npu as torch_npu

makes code written for Ascend (e.g. npu_moe_gating_top_k -> npu_moe_init_routing_v2 -> npu_grouped_matmul ->
npu_swiglu -> npu_grouped_matmul -> npu_moe_finalize_routing) run unchanged on CPU tensors. This module exposes
exactly the operators moefuse implements, with torch_npu's signatures; anything else of torch_npu (devices,
npu_format_cast, streams, ...) is absent, so that unsupported calls fail loudly with AttributeError.
"""

from .ops import *  # noqa: F401,F403 - re-exported: exactly ops.__all__

from .ops import __all__  # exactly the operators moefuse implements, nothing else
