"""Run by test_ep.py under `mpirun -np P python ep_ranks.py MODELS_DIR`: every rank makes expert-parallel layers with
comm=MPI.COMM_WORLD and checks, on its own tokens, that they give bitwise what a single-process MoeLayer with the
same weights gives, that the per-expert token counts are every rank's, and that errors are Python exceptions with
the C++ messages on every rank. Prints "rank R: ok" at the end; any failure aborts the whole job (no rank is left
waiting for one that failed)."""

import sys
import traceback

import numpy as np
from mpi4py import MPI

import moefuse

COMM = MPI.COMM_WORLD
RANK, P = COMM.rank, COMM.size
TIMEOUT = 20.0  # a rank that fails leaves the others waiting at most this long (the abort below ends them sooner)


def shrunk(preset, dtype, quant="none", E=10, K=3, **extra):
    """A preset at test size, with a small chunk so that a forward takes several rounds."""
    m = dict(moefuse.load_config(preset)["model_config"], hidden_size=64, moe_intermediate_size=32, num_experts=E,
             num_experts_per_tok=K, dtype=dtype, quant_mode=quant, moe_chunk_max_len=4)
    if m["shared_expert_intermediate_size"] > 0:
        m["shared_expert_intermediate_size"] = 64
    m.update(extra)
    return {"exe_mode": "ge_graph", "model_config": m}


def rank_tokens(dtype, seed):
    """This rank's tokens: 5, 0 and 9 of them on ranks 0, 1, 2 (a rank with none; uneven rounds)."""
    T = [5, 0, 9][RANK % 3]
    x = np.random.default_rng(seed * 131 + RANK).standard_normal((T, 64)).astype(np.float32)
    return x.astype(np.float16) if dtype == "f16" else x


def expect_same(ep, single, x, what):
    """ep and single on x: the same bytes, decode and prefill; expert_tokens over every rank's tokens."""
    cumulative = np.zeros(len(ep.expert_tokens), dtype=np.int64)
    for prefill in (False, True):
        want = single(x, is_prefill=prefill)
        got = ep(x, is_prefill=prefill)
        assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape)
        assert got.tobytes() == want.tobytes(), f"{what}: prefill={prefill}: outputs differ on rank {RANK}"
        if len(x):
            assert ep.path == single.path, (what, ep.path, single.path)
        counts = COMM.allreduce(np.array(single.expert_tokens, dtype=np.int64), op=MPI.SUM)
        assert ep.expert_tokens == counts.tolist(), (what, ep.expert_tokens, counts)
        cumulative += counts
    assert ep.cumulative_expert_tokens == cumulative.tolist(), (what, ep.cumulative_expert_tokens, cumulative)
    t = ep.last_timings
    rounds = -(-COMM.allreduce(len(x), op=MPI.MAX) // 4)  # ceil(the most tokens of a rank / chunk), on every rank
    assert t["tokens"] == len(x) and t["rounds"] == rounds, (what, t)
    assert t["rows_sent"] == len(x) * ep.config["model_config"]["num_experts_per_tok"], (what, t)


def check_random_weights():
    # qwen2_moe (softmax, gated shared expert) in f16, w8a8 deepseek_v3 (sigmoid, groups, correction bias).
    for cfg in (shrunk("qwen1.5-moe-a2.7b", "f16"),
                shrunk("deepseek-v3", "f16", "w8a8", E=16, K=4, n_group=4, topk_group=2)):
        what = cfg["model_config"]["model_type"] + " " + cfg["model_config"]["quant_mode"]
        ep = moefuse.MoeLayer.from_config(cfg, seed=7, threads=1, comm=COMM, timeout=TIMEOUT)
        single = moefuse.MoeLayer.from_config(cfg, seed=7, threads=1)
        assert isinstance(ep, moefuse.ExpertParallelLayer) and isinstance(ep, moefuse.MoeLayer)
        assert (ep.rank, ep.size, ep.threads) == (RANK, P, 1)
        E = cfg["model_config"]["num_experts"]
        assert [r for e in range(E) for r in ep.placement[e]] == [e * P // E for e in range(E)]  # contiguous blocks
        assert ep.local_experts == [e for e in range(E) if e * P // E == RANK]
        assert ep.config == single.config
        expect_same(ep, single, rank_tokens(cfg["model_config"]["dtype"], 3), what)
        ep(rank_tokens(cfg["model_config"]["dtype"], 4))
        assert ep.path == "superkernel", (what, ep.path)  # a decode step of a config the fused path handles


def check_checkpoint(models):
    # A model folder (olmoe, f32, E = 8): its config.json, a placement replicating expert 0 on every rank.
    folder = f"{models}/olmoe"
    placement = [list(range(P))] + [[e % P] for e in range(1, 8)]
    ep = moefuse.MoeLayer.from_pretrained(folder, 1, threads=1, comm=COMM, placement=placement, timeout=TIMEOUT)
    single = moefuse.MoeLayer.from_pretrained(folder, 1, threads=1)
    assert ep.placement == placement and 0 in ep.local_experts
    x = np.random.default_rng(5 + RANK).standard_normal(([5, 0, 9][RANK % 3], 32)).astype(np.float32)
    cumulative = None
    for _ in range(2):
        want, got = single(x), ep(x)
        assert got.tobytes() == want.tobytes(), f"olmoe folder: outputs differ on rank {RANK}"
        counts = COMM.allreduce(np.array(single.expert_tokens, dtype=np.int64), op=MPI.SUM)
        assert ep.expert_tokens == counts.tolist()
        cumulative = counts if cumulative is None else cumulative + counts
    assert ep.cumulative_expert_tokens == cumulative.tolist()


def expect_error(kind, needle, f):
    try:
        f()
    except kind as e:
        assert needle in str(e), (needle, str(e))
        return str(e)
    raise AssertionError(f"expected {kind.__name__} containing {needle!r}")


def check_errors(models):
    cfg = shrunk("olmoe-1b-7b", "f32", E=4, K=2)
    # A placement naming a rank that does not exist: the C++ message on every rank.
    expect_error(ValueError, f"expected ranks in 0..{P - 1}, got", lambda: moefuse.MoeLayer.from_config(
        cfg, seed=1, threads=1, comm=COMM, placement=[[0], [0], [P], [0]], timeout=TIMEOUT))
    # Ranks that disagree on the config: a ValueError on every rank, naming the ranks.
    mine = shrunk("olmoe-1b-7b", "f32", E=4, K=2 if RANK == 0 else 1)
    expect_error(ValueError, "expected every rank to agree", lambda: moefuse.MoeLayer.from_config(
        mine, seed=1, threads=1, comm=COMM, timeout=TIMEOUT))
    # A missing checkpoint: the loader's OSError, on every rank.
    expect_error(OSError, "nowhere", lambda: moefuse.MoeLayer.from_pretrained(
        f"{models}/nowhere.safetensors", 0, cfg, threads=1, comm=COMM, timeout=TIMEOUT))
    # An input refused on rank 0 only: its own error there, a ValueError naming rank 0 on the others.
    ep = moefuse.MoeLayer.from_config(cfg, seed=1, threads=1, comm=COMM, timeout=TIMEOUT)
    width = 63 if RANK == 0 else 64
    needle = "hidden_size" if RANK == 0 else "rank(s) 0 refusing"
    expect_error(ValueError, needle, lambda: ep(np.zeros((2, width), dtype=np.float32)))
    expect_error(TypeError, "weights", ep.weights)
    expect_error(TypeError, "single-process", lambda: moefuse.reference_layer_forward(ep, np.zeros((1, 64))))


def main():
    models = sys.argv[1]
    check_random_weights()
    check_checkpoint(models)
    check_errors(models)
    print(f"rank {RANK}: ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        COMM.Abort(1)
