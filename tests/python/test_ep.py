"""Expert parallelism from Python (moefuse.MoeLayer.from_config / from_pretrained with comm=): ep_ranks.py under
`mpirun -np 2` and `-np 3 --oversubscribe`, bitwise against the single-process layer on every rank; and the
argument errors that need no MPI job."""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import moefuse
from moefuse import _core

HERE = pathlib.Path(__file__).resolve().parent
MODELS = HERE.parent / "data" / "models"


def _mpi_missing():
    if not _core.HAVE_MPI:
        return "moefuse was built without MPI (libopenmpi-dev absent when it was built)"
    if shutil.which("mpirun") is None:
        return "mpirun not found (Debian: openmpi-bin)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py not installed (pip install mpi4py)"
    return None


@pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_equal_the_single_process_layer(ranks):
    # OpenMPI's mpirun refuses to start as root without the two ALLOW_RUN_AS_ROOT variables (CI runs as root); the
    # vader setting avoids the ptrace-based single copy that containers forbid (as the C++ EP tests run it).
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")
    cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", sys.executable, str(HERE / "ep_ranks.py"), str(MODELS)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    for rank in range(ranks):
        assert f"rank {rank}: ok" in r.stdout, r.stdout + r.stderr


def test_comm_argument_errors():
    cfg = "olmoe-1b-7b"
    if not _core.HAVE_MPI:
        with pytest.raises(RuntimeError, match="built with MPI"):
            moefuse.MoeLayer.from_config(cfg, comm=object())
    else:
        with pytest.raises(TypeError, match="expected an mpi4py communicator"):
            moefuse.MoeLayer.from_config(cfg, comm=object())
        with pytest.raises(TypeError, match="expected an mpi4py communicator"):
            moefuse.MoeLayer.from_pretrained(MODELS / "olmoe", 1, comm=3)
    # placement= and timeout= without comm= are mistakes, said before anything is loaded.
    with pytest.raises(ValueError, match="placement: expected None without comm"):
        moefuse.MoeLayer.from_config(cfg, placement=[[0]])
    with pytest.raises(ValueError, match="timeout: expected None without comm"):
        moefuse.MoeLayer.from_pretrained(MODELS / "olmoe", 1, timeout=5)


def test_single_process_expert_tokens():
    layer = moefuse.MoeLayer.from_pretrained(MODELS / "olmoe", 1, threads=1)  # E = 8, K = 3
    x = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)
    assert layer.expert_tokens == [0] * 8 and layer.cumulative_expert_tokens == [0] * 8
    layer(x)
    first = layer.expert_tokens
    assert sum(first) == 5 * 3 and len(first) == 8
    layer(x[:2])
    assert sum(layer.expert_tokens) == 2 * 3
    assert layer.cumulative_expert_tokens == [a + b for a, b in zip(first, layer.expert_tokens)]
