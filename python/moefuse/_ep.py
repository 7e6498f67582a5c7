"""Expert parallelism from Python: the arguments of ``MoeLayer.from_config`` / ``from_pretrained`` with ``comm=`` and
the layer they make, :class:`ExpertParallelLayer` (moefuse::ExpertParallelLayer, include/moefuse/ep.h).

    from mpi4py import MPI
    layer = moefuse.MoeLayer.from_pretrained("/models/olmoe", 3, comm=MPI.COMM_WORLD, threads=1)
    y = layer(x)        # every rank, each with its own tokens x [T_r, H] (T_r may be 0): y [T_r, H]

The communicator is passed to the C++ layer as its Fortran handle (``comm.py2f()``, converted back with
MPI_Comm_f2c), so moefuse needs no mpi4py at build time; mpi4py must run on the MPI library moefuse was built with.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Dict, List, Tuple

from . import _core
from ._tensors import to_float, to_int
from .layer import MoeLayer

# What ExpertParallelLayer's C++ options hold by default (EpOptions::timeout_seconds).
DEFAULT_TIMEOUT = 60.0


def _mpi_library(comm: Any) -> str:
    """The MPI library the communicator's mpi4py runs on ('' when it cannot say)."""
    module = sys.modules.get(type(comm).__module__)
    get = getattr(module, "Get_library_version", None)
    try:
        return str(get()) if callable(get) else ""
    except Exception:  # pragma: no cover - an mpi4py without a working MPI
        return ""


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


def _placement(value: Any, op: str) -> Tuple[List[List[int]], str]:
    """(rank lists, "") for a list of lists, ([], path) for a JSON file, ([], "") for None (contiguous blocks)."""
    if value is None:
        return [], ""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if "\0" in path:
            raise ValueError(f"{op}: placement: expected a path without NUL characters, got {path!r}")
        return [], path
    if isinstance(value, (bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{op}: placement: expected a list of rank lists (one per expert) or a JSON file path, got "
                        f"{type(value).__name__}")
    ranks = []
    for e, rs in enumerate(value):
        if isinstance(rs, (str, bytes)) or not hasattr(rs, "__iter__"):
            raise TypeError(f"{op}: placement[{e}]: expected a list of ranks, got {type(rs).__name__}")
        row = [to_int(r, op, f"placement[{e}]") for r in rs]
        for r in row:
            if not -2 ** 31 <= r < 2 ** 31:
                raise ValueError(f"{op}: placement[{e}]: expected ranks in 0..P-1, got {r}")
        ranks.append(row)
    return ranks, ""


def ep_arguments(comm: Any, placement: Any, timeout: Any, op: str) -> Tuple[int, List[List[int]], str, float]:
    """(the communicator's Fortran handle, placement rank lists, placement file, timeout) for _core.EpLayer.
    RuntimeError when this moefuse was built without MPI or mpi4py runs on another MPI library; TypeError for a
    comm that is not an mpi4py communicator."""
    if not _core.HAVE_MPI:
        raise RuntimeError(f"{op}: comm: expected a moefuse built with MPI (libopenmpi-dev installed when it was "
                           "built), got one built without: expert parallelism is not available")
    py2f = getattr(comm, "py2f", None)
    if not callable(py2f):
        raise TypeError(f"{op}: comm: expected an mpi4py communicator (e.g. mpi4py.MPI.COMM_WORLD), got "
                        f"{type(comm).__name__}")
    theirs = _mpi_library(comm)
    if theirs and _first_line(theirs) != _first_line(_core.MPI_LIBRARY_VERSION):
        raise RuntimeError(f"{op}: comm: expected mpi4py running the MPI library moefuse was built with "
                           f"({_first_line(_core.MPI_LIBRARY_VERSION)}), got {_first_line(theirs)}")
    handle = int(py2f())
    ranks, path = _placement(placement, op)
    seconds = DEFAULT_TIMEOUT if timeout is None else to_float(timeout, op, "timeout")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{op}: timeout: expected a finite number of seconds > 0, got {seconds}")
    return handle, ranks, path, seconds


class ExpertParallelLayer(MoeLayer):
    """One MoE layer whose routed experts are split across the ranks of an MPI communicator
    (moefuse::ExpertParallelLayer): made by ``MoeLayer.from_config`` / ``from_pretrained`` with ``comm=``.

    Making it and every forward are collective: every rank of the communicator calls them (the same config,
    layer and placement on each). ``layer(x)`` on a rank takes that rank's tokens x [T_r, H] (T_r may be 0 and
    differ between ranks) and returns their outputs, bitwise what a single-process MoeLayer with the same
    weights gives those tokens, for any number of ranks, split of tokens and placement. A rank that stops taking
    part fails the others with an OSError after `timeout` seconds; a refused input raises on its rank (its own
    error) and a ValueError on the others. Each rank holds only its own experts, so :meth:`weights` and
    ``reference_layer_forward`` are not available."""

    __slots__ = ()

    @property
    def rank(self) -> int:
        """This process's rank in the layer's communicator."""
        return self._layer.rank

    @property
    def size(self) -> int:
        """The number of ranks (P)."""
        return self._layer.size

    @property
    def placement(self) -> List[List[int]]:
        """[E]: the ranks holding each expert (contiguous blocks unless a placement was given)."""
        return self._layer.placement

    @property
    def local_experts(self) -> List[int]:
        """The experts this rank holds (global ids, ascending)."""
        return self._layer.local_experts

    @property
    def last_timings(self) -> Dict[str, Any]:
        """The last forward on this rank (moefuse::EpTimings): milliseconds of routing, dispatch (the part of
        the row exchange the shared expert did not hide), shared, experts, combine and total; tokens, rounds,
        rows_sent / rows_received, and the bytes sent to and received from other ranks in the dispatch and the
        combine (dispatch_bytes_out, dispatch_bytes_in, combine_bytes_out, combine_bytes_in)."""
        return self._layer.last_timings

    @property
    def path(self) -> str:
        """Which path the experts ran in the last forward that had tokens on any rank, as for MoeLayer:
        "superkernel" (the fused decode path's expert tasks), "chain" or "chain: <why>"."""
        return self._layer.path

    @property
    def threads(self) -> int:
        """Threads a forward uses on this rank (threads=0 resolved to the core count)."""
        return self._layer.threads

    def weights(self) -> Dict[str, Any]:
        """Not available: a rank holds only its own experts, packed for its kernels."""
        raise TypeError("ExpertParallelLayer.weights: expected a single-process MoeLayer, got an expert-parallel "
                        "layer (each rank holds only its own experts)")

    def __repr__(self) -> str:
        m = self._layer.config.to_dict()["model_config"]
        return (f"moefuse.ExpertParallelLayer({m['model_type']}, E={m['num_experts']}, "
                f"K={m['num_experts_per_tok']}, H={m['hidden_size']}, I={m['moe_intermediate_size']}, "
                f"dtype={m['dtype']}, quant_mode={m['quant_mode']}, rank={self.rank}, size={self.size}, "
                f"local_experts={self.local_experts})")
