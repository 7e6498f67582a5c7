"""moefuse: Ascend torch_npu's MoE fused operators on CPUs, exact and validated.

The operators keep torch_npu's names, arguments and defaults (see moefuse.ops for the conventions: numpy / torch /
DLPack inputs read in place, results of the main input's kind sharing memory with the C++ output, errors as
ValueError / TypeError / OSError / MemoryError naming the argument). ``import moefuse.torch_npu as torch_npu`` gives
a module with exactly these functions, so that code written for Ascend runs on a CPU unchanged.

The MoE layer (moefuse.MoeLayer, see moefuse.layer) runs the whole chain of one model's MoE block, configured like
the C++ layer: ``moefuse.MoeLayer.from_config("qwen3-30b-a3b", seed=1)(x)``. With ``comm=`` (an mpi4py
communicator) the same constructors make a moefuse.ExpertParallelLayer, its experts split across MPI ranks.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .layer import MoeLayer, load_config, model_config, preset_names, reference_layer_forward
from ._ep import ExpertParallelLayer
from .ops import (
    npu_clipped_swiglu,
    npu_dequant_swiglu_quant,
    npu_grouped_matmul,
    npu_moe_finalize_routing,
    npu_moe_gating_top_k,
    npu_moe_gating_top_k_softmax,
    npu_moe_gating_top_k_softmax_v2,
    npu_moe_init_routing,
    npu_moe_init_routing_v2,
    npu_swiglu,
    npu_swiglu_clip_quant,
)

try:
    __version__ = _version("moefuse")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

from . import ops as _ops

__all__ = [*_ops.__all__, "MoeLayer", "ExpertParallelLayer", "reference_layer_forward", "preset_names", "load_config", "model_config"]
