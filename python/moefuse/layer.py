"""The MoE layer: moefuse::MoeLayer (include/moefuse/layer.h, docs/layer.md) with the same configuration and options.

    layer = moefuse.MoeLayer.from_config("qwen3-30b-a3b", seed=1)           # a preset, a YAML path or a dict
    layer = moefuse.MoeLayer.from_pretrained("/models/olmoe", 3, "olmoe-1b-7b")   # weights of layer 3
    y = layer(x)                                                             # x, y: [T, H] in the model dtype

A config is given as
* a preset name (``moefuse.preset_names()``, or ``"default"`` = olmoe-1b-7b): a str equal to a preset name is
  always the preset (pass a ``pathlib.Path`` or ``"./name"`` for a file of that name);
* a path to a YAML file (a ``str`` or ``os.PathLike``): a str that is not a preset name is a path when a file of
  that name exists, or it contains a ``/`` or ends with ``.yaml`` / ``.yml``; any other str is reported as an
  unknown preset (ValueError listing the presets);
* a dict in the YAML structure, ``{"exe_mode": ..., "numerics": ..., "model_config": {...}}`` (numerics optional) (what ``layer.config`` and
  ``moefuse.load_config`` return). It is read exactly as the equivalent YAML file would be, by the same C++ parser:
  Python str values are YAML strings (so ``"64"`` is not an integer), bools are true/false, ints and floats are
  numbers, None is null. Errors start with ``config dict:`` and name the key path.

Every config is validated by the C++ code, which names the key, the value and what was expected (ValueError; a
file that cannot be read or is not YAML: OSError). Loading and forward passes run without the GIL; forward passes
of one layer from several threads run one after the other (the layer reuses its workspaces). All layers share the
process's one thread pool: a forward that finds it busy with another layer's runs on its calling thread alone, with
the same result.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Mapping
from typing import Any, Dict, List, Optional

import numpy as np

from . import _core
from ._tensors import from_tensor, kind_of, to_bool, to_int, to_tensor

__all__ = ["MoeLayer", "load_config", "model_config", "preset_names", "reference_layer_forward"]

_DICT_SOURCE = "config dict"
# The C++ parser prefixes messages with "<source>:<line>:<column>"; for a dict the position is one in the YAML text
# generated from it, which means nothing to the caller: it is dropped (the key path stays).
_DICT_POSITION = re.compile(re.escape(_DICT_SOURCE) + r":\d+:\d+: ")
# A config is two levels deep; anything nested deeper than this is refused before it is turned into YAML (and before
# Python's recursion limit could be reached).
_MAX_CONFIG_DEPTH = 32
_UINT64_MAX = 2 ** 64 - 1


def preset_names() -> List[str]:
    """The built-in presets (configs/<name>.yaml, embedded in the library), sorted by name."""
    return list(_core.preset_names())


# ------------------------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------------------------


def _where(path: str) -> str:
    return path if path else "(top level)"


def _yaml_string(s: str, path: str) -> str:
    """`s` as a YAML double-quoted scalar: printable ASCII as is, everything else escaped (YAML 1.2 §5.7)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"{_DICT_SOURCE}: {_where(path)}: expected a valid Unicode string, got one with the "
                             f"lone surrogate U+{o:04X}")
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _yaml_scalar(v: Any, path: str) -> Optional[str]:
    """The YAML form of a scalar (None, bool, int, float, str; numpy scalars included), or None if `v` is none."""
    if v is None:
        return "null"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return ".nan"
        if math.isinf(f):
            return ".inf" if f > 0 else "-.inf"
        return repr(f)
    if isinstance(v, str):
        return _yaml_string(v, path)
    return None


def _yaml_flow(v: Any, path: str, depth: int = 0, open_containers: Optional[set] = None) -> str:
    """`v` (a dict in the YAML structure) as YAML flow text, read by the C++ parser exactly as the equivalent file.
    A dict or list that contains itself, or nesting deeper than _MAX_CONFIG_DEPTH, is a ValueError naming the path
    (never a RecursionError)."""
    if isinstance(v, (Mapping, list, tuple)):
        if open_containers is None:
            open_containers = set()
        if id(v) in open_containers:
            raise ValueError(f"{_DICT_SOURCE}: {_where(path)}: expected a tree of dicts and lists, got a "
                             f"{type(v).__name__} that contains itself")
        if depth >= _MAX_CONFIG_DEPTH:
            raise ValueError(f"{_DICT_SOURCE}: {_where(path)}: expected at most {_MAX_CONFIG_DEPTH} levels of "
                             "nesting, got more")
        open_containers.add(id(v))
        try:
            if isinstance(v, Mapping):
                items = []
                for k, item in v.items():
                    key = _yaml_scalar(k, path)
                    if key is None:
                        raise TypeError(f"{_DICT_SOURCE}: {_where(path)}: expected str keys, got a key of type "
                                        f"{type(k).__name__}")
                    sub = f"{path}.{k}" if path else str(k)
                    items.append(f"{key}: {_yaml_flow(item, sub, depth + 1, open_containers)}")
                return "{" + ", ".join(items) + "}"
            return "[" + ", ".join(_yaml_flow(item, f"{path}[{i}]", depth + 1, open_containers)
                                   for i, item in enumerate(v)) + "]"
        finally:
            open_containers.discard(id(v))
    s = _yaml_scalar(v, path)
    if s is None:
        raise TypeError(f"{_DICT_SOURCE}: {_where(path)}: expected a str, bool, int, float, None, dict or list, got "
                        f"{type(v).__name__}")
    return s


def _checked_path(path: str, op: str, name: str) -> str:
    """`path`, refused (ValueError) when it holds a NUL character: the C library would stop reading the name there
    and open a different file (its prefix)."""
    if "\0" in path:
        raise ValueError(f"{op}: {name}: expected a path without NUL characters, got {path!r}")
    return path


def _is_path_like(s: str) -> bool:
    return os.path.exists(s) or "/" in s or os.sep in s or s.endswith((".yaml", ".yml"))


def _to_config(config: Any, op: str) -> "_core.Config":
    """A validated C++ MoeConfig from a preset name, a YAML path or a dict (the rules of this module's docstring)."""
    if isinstance(config, Mapping):
        text = _yaml_flow(config, "")
        try:
            return _core.Config.from_yaml(text, _DICT_SOURCE)
        except (ValueError, OSError) as e:
            message = str(e)
            match = _DICT_POSITION.match(message)
            if match is None:
                raise
            raise type(e)(f"{_DICT_SOURCE}: {message[match.end():]}") from None
    if isinstance(config, os.PathLike):
        path = os.fspath(config)
        if not isinstance(path, str):
            raise TypeError(f"{op}: config: expected a str path, got {type(path).__name__}")
        return _core.Config.from_file(_checked_path(path, op, "config"))
    if isinstance(config, str):
        if "\0" in config:
            _checked_path(config, op, "config")
        if config == "default" or config in _core.preset_names() or not _is_path_like(config):
            return _core.Config.from_preset(config)  # ValueError listing the presets for an unknown name
        return _core.Config.from_file(config)
    raise TypeError(f"{op}: config: expected a preset name, a YAML file path or a dict in the YAML structure, got "
                    f"{type(config).__name__}")


def _path_argument(value: Any, op: str, name: str) -> str:
    """A path argument (str or os.PathLike) as a str, checked by _checked_path; TypeError for anything else."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name}: expected a path (str or os.PathLike), got {type(value).__name__}")
    _checked_path(value, op, name)
    return value


def model_config(path: Any) -> Dict[str, Any]:
    """What moefuse reads of a model folder's config.json (load_model_config, docs/layer.md §7): a dict with
    "source", "num_hidden_layers", "moe_layers" (the decoder layers that are MoE layers), "quant_mode" and
    "quantized_layers" (from a quantization_config written by `moefuse quantize`, or a GPTQ release's: w4a16 / w4a8),
    "fp8_weight_block" ([bn, bk] of an FP8 block-scaled release, whose expert weights a bf16 layer holds one byte each
    when its blocks are 128 input channels wide (docs/layer.md §7), and which are dequantised to the model dtype on
    load otherwise; None otherwise), "gptq" (a GPTQ or AWQ int4 release's {"quant_method" ("gptq" or
    "awq"), "bits", "group_size", "sym", "desc_act", "checkpoint_format"}; None otherwise) and "config", the MoE layer's
    config in the YAML structure. path: the folder or the config.json file. Errors: OSError when it cannot be read or
    is not JSON; ValueError naming the key for an unknown model_type, a missing key or a wrong value."""
    d = _core.model_config(_path_argument(path, "moefuse.model_config", "path"))
    d["config"] = d.pop("layer").to_dict()
    return d


def load_config(config: Any) -> Dict[str, Any]:
    """The validated config of a preset name, a YAML file path or a dict, as a dict in the YAML structure with every
    key (defaults filled in): ``{"exe_mode": "ge_graph", "model_config": {"model_type": ..., ...}}``."""
    return _to_config(config, "load_config").to_dict()


# ------------------------------------------------------------------------------------------------------------------
# The layer
# ------------------------------------------------------------------------------------------------------------------


def _threads(value: Any, op: str) -> int:
    threads = to_int(value, op, "threads")
    if threads > _core.MAX_THREADS:
        raise ValueError(f"{op}: threads: expected 0 (every core) or a count in 1..{_core.MAX_THREADS}, got "
                         f"{threads}")
    return threads  # a negative count is refused by the C++ layer, with its message


def _no_ep_options(placement: Any, timeout: Any, op: str) -> None:
    """placement= and timeout= belong to comm=: without it they are a mistake worth saying."""
    if placement is not None:
        raise ValueError(f"{op}: placement: expected None without comm (a placement splits the experts between the "
                         f"ranks of a communicator), got {type(placement).__name__}")
    if timeout is not None:
        raise ValueError(f"{op}: timeout: expected None without comm (it bounds the waits between ranks), got "
                         f"{timeout!r}")


def _numerics(value: Any, op: str) -> Optional[str]:
    """The numerics= argument: None (the config's ``numerics`` key, else the process default, MOEFUSE_NUMERICS or
    "native"), "native" or "portable"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{op}: numerics: expected 'native', 'portable' or None, got {type(value).__name__}")
    if value not in ("native", "portable"):
        raise ValueError(f"{op}: numerics: expected 'native', 'portable' or None, got {value!r}")
    return value


def _seed(value: Any, op: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: seed: expected an int, got bool")
    try:
        seed = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: seed: expected an int, got {type(value).__name__}") from None
    if not 0 <= seed <= _UINT64_MAX:
        raise ValueError(f"{op}: seed: expected 0 <= seed < 2**64, got {seed}")
    return seed


class MoeLayer:
    """One Mixture-of-Experts layer (moefuse::MoeLayer): router, top-k gating, routing, routed experts, shared
    expert and combine, for bf16 / f16 / f32 models and the w8a8 / w8a8c8 chains (docs/layer.md).

    Make one with :meth:`from_config` (random weights) or :meth:`from_pretrained` (a Hugging Face checkpoint).
    """

    __slots__ = ("_layer",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("MoeLayer: use MoeLayer.from_config(config, seed=...) or "
                        "MoeLayer.from_pretrained(checkpoint, layer, config)")

    @classmethod
    def _wrap(cls, core_layer: "_core.MoeLayer") -> "MoeLayer":
        obj = object.__new__(cls)
        obj._layer = core_layer
        return obj

    @classmethod
    def from_config(cls, config: Any, *, seed: int = 0, threads: int = 0, numerics: Optional[str] = None,
                    comm: Any = None, placement: Any = None, timeout: Any = None) -> "MoeLayer":
        """A layer with deterministic random weights (MoeLayer::with_random_weights): every projection uniform with
        standard deviation 1/sqrt(fan_in), deepseek_v3's correction bias uniform in [-0.05, 0.05), clip factors 1;
        quantised configs quantise them per output channel. The same seed gives the same weights for any thread
        count.

        config: a preset name, a YAML file path or a dict in the YAML structure (module docstring).
        seed: 0 <= seed < 2**64. threads: threads per forward, 0 = every core, at most 1024.
        numerics: the numerics tier (LayerOptions::numerics, docs/layer.md §2): "portable" (bitwise
        :func:`reference_layer_forward` on every CPU) or "native" (bf16 expert weights on AMX-BF16 where the CPU has
        it, within the per-token tolerance docs/layer.md states; the routing stays exact); None = the config's
        ``numerics`` key, else the process default (the environment variable MOEFUSE_NUMERICS, else "native").
        comm, placement, timeout: an expert-parallel layer (:class:`moefuse.ExpertParallelLayer`) over an mpi4py
        communicator, see :meth:`from_pretrained`; expert e has the weights it has in the single-process layer of
        the same seed.
        Errors: ValueError for a bad config (naming the key) or argument; OSError for an unreadable config file;
        MemoryError when the weights and workspaces do not fit in memory (checked before allocating)."""
        op = "MoeLayer.from_config"
        cfg = _to_config(config, op)
        seed, threads, tier = _seed(seed, op), _threads(threads, op), _numerics(numerics, op)
        if comm is not None:
            from . import _ep
            handle, ranks, path, seconds = _ep.ep_arguments(comm, placement, timeout, op)
            return _ep.ExpertParallelLayer._wrap(
                _core.EpLayer.with_random_weights(cfg, seed, threads, tier, handle, ranks, path, seconds))
        _no_ep_options(placement, timeout, op)
        return cls._wrap(_core.MoeLayer.with_random_weights(cfg, seed, threads, tier))

    @classmethod
    def from_pretrained(cls, checkpoint: Any, layer: int = 0, config: Any = None, *, threads: int = 0,
                        allow_non_finite: bool = False, numerics: Optional[str] = None, comm: Any = None,
                        placement: Any = None, timeout: Any = None) -> "MoeLayer":
        """The weights of decoder layer `layer` of a Hugging Face checkpoint (MoeLayer::from_checkpoint), by the
        tensor names of docs/layer.md §5 (model.layers.<layer>.mlp...; mixtral: block_sparse_moe).

        checkpoint: a model folder as shipped (a directory holding config.json and the safetensors), a .safetensors
        file, an index .json (model.safetensors.index.json) or a directory holding one of them.
        config: for a model folder, optional: the layer's config is read from its config.json (load_model_layer,
        docs/layer.md §7), and a config given here supplies only the execution keys (exe_mode, numerics,
        enable_superkernel, moe_chunk_max_len, router_logits_dtype, fp8_activations for an FP8 folder; dtype, and
        quant_mode for a float layer), its model keys having to agree with config.json. Otherwise required: a preset name, a YAML file path or a dict, as for from_config —
        the checkpoint does not say which dtype and quantised chain to run (a float checkpoint with a quantised
        config is quantised per output channel on load; an int8 checkpoint needs quant_mode w8a8 or w8a8c8).
        layer: for a model folder, one of its MoE layers (ValueError naming them otherwise).
        allow_non_finite: accept NaN and infinite weights (LayerOptions::allow_non_finite_weights); by default the
        first one is a ValueError naming the file, the tensor and its index.
        numerics: the numerics tier, as for :meth:`from_config`.
        comm: an mpi4py communicator (e.g. ``mpi4py.MPI.COMM_WORLD``): the layer is then an
        :class:`moefuse.ExpertParallelLayer` whose routed experts are split across the communicator's ranks, each
        rank reading only its own experts (and the router and shared expert) from the checkpoint. Every rank must
        make it (collective), with the same arguments. placement: which ranks hold each expert — None (contiguous
        blocks: expert e on rank e * P / E), a list of rank lists ``[[0], [0, 1], [1], ...]`` (an expert on several
        ranks has its rows split between them) or the path of a JSON file ``{"experts": [[0], [0, 1], ...]}``.
        timeout: seconds a rank waits for the others in any exchange before it fails with an OSError (default
        60). RuntimeError when moefuse was built without MPI; the ranks' disagreements (config, placement, the
        weights all ranks read) are a ValueError on every rank.
        Errors: OSError for a missing or malformed file or a missing tensor (naming the file and the tensor);
        ValueError / TypeError for a tensor of the wrong shape or dtype, a config.json the tensors contradict, an
        unknown model_type; ValueError for a non-finite weight or a path holding a NUL character; MemoryError when
        it does not fit."""
        op = "MoeLayer.from_pretrained"
        checkpoint = _path_argument(checkpoint, op, "checkpoint")
        index = to_int(layer, op, "layer")
        if index < 0:
            raise ValueError(f"{op}: layer: expected a layer index >= 0, got {index}")
        allow = to_bool(allow_non_finite, op, "allow_non_finite")
        threads = _threads(threads, op)
        tier = _numerics(numerics, op)
        if comm is not None:
            from . import _ep
            ep = _ep.ep_arguments(comm, placement, timeout, op)
            core, wrap = _core.EpLayer, _ep.ExpertParallelLayer._wrap
        else:
            _no_ep_options(placement, timeout, op)
            ep, core, wrap = (), _core.MoeLayer, cls._wrap
        if os.path.isdir(checkpoint) and os.path.isfile(os.path.join(checkpoint, "config.json")):
            options = None if config is None else _to_config(config, op)
            source = "" if config is None else (_DICT_SOURCE if isinstance(config, Mapping) else str(config))
            return wrap(core.from_model_folder(checkpoint, index, options, source, threads, allow, tier, *ep))
        if config is None:
            raise TypeError(f"{op}: config: expected a preset name, a YAML file path or a dict in the YAML structure "
                            "(the checkpoint has no config.json to say the model, dtype and quant mode), got None")
        cfg = _to_config(config, op)
        return wrap(core.from_checkpoint(cfg, checkpoint, index, threads, allow, tier, *ep))

    def forward(self, x: Any, is_prefill: bool = False) -> Any:
        """Runs the layer on x [T, H] (numpy array, torch CPU tensor or DLPack tensor, in the model dtype; bf16 as
        torch.bfloat16 or ml_dtypes.bfloat16; any strides) and returns [T, H] in the model dtype, of x's kind (torch
        for torch, numpy otherwise). `is_prefill` selects the prefill schedule; no execution option changes a bit of
        the output. Errors: ValueError for a wrong rank or width, TypeError for a wrong dtype."""
        op = "MoeLayer"
        kind = kind_of(x)
        out = self._layer.forward(to_tensor(x, op, "x"), to_bool(is_prefill, op, "is_prefill"))
        return from_tensor(out, kind, op, "out")

    def __call__(self, x: Any, is_prefill: bool = False) -> Any:
        """layer(x) = layer.forward(x)."""
        return self.forward(x, is_prefill)

    @property
    def config(self) -> Dict[str, Any]:
        """The layer's config as a dict in the YAML structure, every key present (a new dict each time);
        MoeLayer.from_config(layer.config, seed=s) makes the same layer as the config it came from."""
        return self._layer.config.to_dict()

    @property
    def last_timings(self) -> Dict[str, Any]:
        """Milliseconds per stage of the last forward (router, gating, routing, experts, shared, combine: summed
        over chunks, averaged over the threads that ran; total: wall time), its tokens and chunks, and weight_bytes /
        active_experts: the bytes of weights it read and the distinct experts it ran, summed over chunks."""
        return self._layer.last_timings

    @property
    def path(self) -> str:
        """Which path the last forward ran: "superkernel" (the fused decode path), "chain" (the operator chain) or
        "chain: <why>" when the fused path was asked for and declined (e.g. "chain: I=80 is not a multiple of 32")."""
        return self._layer.path

    @property
    def numerics(self) -> str:
        """The numerics tier the layer runs, "native" or "portable" (numerics= resolved when it was made)."""
        return self._layer.numerics

    @property
    def threads(self) -> int:
        """Threads a forward uses (threads=0 resolved to the core count)."""
        return self._layer.threads

    @property
    def expert_tokens(self) -> List[int]:
        """[E]: rows routed to each expert in the last forward (its tokens' top-k choices; with comm=, every rank's
        tokens, the same list on every rank): the load an expert placement balances."""
        return self._layer.expert_tokens

    @property
    def cumulative_expert_tokens(self) -> List[int]:
        """[E]: expert_tokens summed over every forward since the layer was made."""
        return self._layer.cumulative_expert_tokens

    def weights(self) -> Dict[str, np.ndarray]:
        """The layer's weights (LayerWeights, include/moefuse/layer.h) by member name, as read-only numpy arrays:
        the projections (w13, w2, shared_w13, shared_w2) are copies unpacked from the layer's packed weights (the
        only copy it keeps: as much memory again), the others share the layer's memory. router [E, H]; router_bias [E] (deepseek_v3); w13 [E, 2I, H] (gate rows, then
        up rows); w2 [E, H, I]; and, as the config needs them, w13_scale [E, 2I], w2_scale [E, H], smooth_scale1,
        smooth_scale2, clip_alpha [E], shared_w13 [1, 2Is, H], shared_w2 [1, H, Is], shared_w13_scale,
        shared_w2_scale, shared_gate [1, H]; w4a16: u8 int4 values in w13 / w2 / shared_*, scales [.., in / G] and
        zero points w13_zero, w2_zero, shared_w13_zero, shared_w2_zero [.., in / G] (u8), and for a GPTQ checkpoint
        in act order w13_perm [E, H] / shared_w13_perm [1, H] (i32: the input channel each column of w13 multiplies,
        docs/layer.md §5). bf16 weights need ml_dtypes (TypeError otherwise)."""
        out = {}
        for name, t in self._layer.weights():
            a = from_tensor(t, "numpy", "MoeLayer.weights", name)
            a.flags.writeable = False
            out[name] = a
        return out

    def __repr__(self) -> str:
        m = self._layer.config.to_dict()["model_config"]
        return (f"moefuse.MoeLayer({m['model_type']}, E={m['num_experts']}, K={m['num_experts_per_tok']}, "
                f"H={m['hidden_size']}, I={m['moe_intermediate_size']}, dtype={m['dtype']}, "
                f"quant_mode={m['quant_mode']}, threads={self.threads})")


def reference_layer_forward(layer: MoeLayer, x: Any) -> Any:
    """The oracle (moefuse::reference_layer_forward): `layer`'s math as a plain per-token, per-expert loop with the
    rounding points of docs/layer.md §1, sharing no code with the layer's compute path (its own router, gating,
    experts and combine), single-threaded and unchunked. x and the result as in MoeLayer.forward; layer(x) equals it
    bit for bit in the portable tier (``layer.numerics``), within docs/layer.md's per-token tolerance in the native
    one."""
    op = "reference_layer_forward"
    if not isinstance(layer, MoeLayer):
        raise TypeError(f"{op}: layer: expected a moefuse.MoeLayer, got {type(layer).__name__}")
    if not isinstance(layer._layer, _core.MoeLayer):
        raise TypeError(f"{op}: layer: expected a single-process moefuse.MoeLayer, got an expert-parallel layer "
                        "(each rank holds only its own experts)")
    kind = kind_of(x)
    out = layer._layer.reference_forward(to_tensor(x, op, "x"))
    return from_tensor(out, kind, op, "out")
