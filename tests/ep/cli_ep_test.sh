#!/usr/bin/env bash
# `moefuse run --ep` and `moefuse bench --ep` under mpirun (CTest runs this with the command and mpirun's path):
# the expert-parallel run gives the single-process run's checksum with 2 and 3 ranks and with a placement that
# replicates an expert; the per-expert counts add up; bench --ep writes its JSON; misuse is a clear error.
set -euo pipefail
moefuse=$1
mpirun=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$dir/tiny.yaml" <<'YAML'
model_config:
  model_type: deepseek_v2
  num_experts: 8
  num_experts_per_tok: 3
  hidden_size: 64
  moe_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: false
  n_shared_experts: 1
  dtype: bf16
  quant_mode: w8a8
  moe_chunk_max_len: 4
YAML
echo '{"experts": [[0, 1, 2], [1], [2], [0], [1], [2], [0], [1, 0]]}' > "$dir/placement.json"

fnv() { grep '"fnv1a64"' | head -1 | tr -d ' ",' | cut -d: -f2; }
single=$("$moefuse" run --config "$dir/tiny.yaml" --tokens 11 --threads 1 --json | fnv)
[ -n "$single" ] || fail "no checksum from the single-process run"

"$mpirun" -np 2 --oversubscribe "$moefuse" run --ep --config "$dir/tiny.yaml" --tokens 11 --threads 1 --json \
  > "$dir/np2.json"
[ "$(fnv < "$dir/np2.json")" = "$single" ] || fail "2 ranks: checksum $(fnv < "$dir/np2.json"), single $single"
grep -q '"expert_tokens"' "$dir/np2.json" || fail "no expert_tokens in run --ep --json"
# The last forward's rows per expert add up to tokens * K = 33.
last=$(tr -d ' \n' < "$dir/np2.json" | sed 's/.*"expert_tokens":{"last":\[\([0-9,]*\)\].*/\1/')
[ "$(( ${last//,/+} ))" = 33 ] || fail "expert_tokens.last [$last] does not add up to 33"

three=$("$mpirun" -np 3 --oversubscribe "$moefuse" run --ep --placement "$dir/placement.json" \
  --config "$dir/tiny.yaml" --tokens 11 --threads 1 --json | fnv)
[ "$three" = "$single" ] || fail "3 ranks with a placement: checksum $three, single $single"

# The ranks' experts take the single-process layer's path: the fused one for a decode step (enable_superkernel is on
# by default), the chain without it; the same bits either way.
grep -q '"path": "superkernel"' "$dir/np2.json" || fail "run --ep --json: the experts did not take the fused path"
{ cat "$dir/tiny.yaml"; echo "  enable_superkernel: false"; } > "$dir/chain.yaml"
"$mpirun" -np 2 --oversubscribe "$moefuse" run --ep --config "$dir/chain.yaml" --tokens 11 --threads 1 --json \
  > "$dir/chain.json"
[ "$(fnv < "$dir/chain.json")" = "$single" ] || fail "2 ranks, the chain: checksum $(fnv < "$dir/chain.json")"
grep -q '"path": "chain"' "$dir/chain.json" || fail "run --ep --json: not the chain without enable_superkernel"

"$mpirun" -np 2 --oversubscribe "$moefuse" run --ep --config "$dir/tiny.yaml" --tokens 5 --threads 1 \
  | grep -q "expert parallel over 2 ranks" || fail "run --ep text report"

"$mpirun" -np 2 --oversubscribe "$moefuse" bench --ep --config "$dir/tiny.yaml" --tokens 1,6 --iters 1 \
  --threads 1 --json "$dir/bench.json" > "$dir/bench.txt"
grep -q '"tokens_per_rank": 6' "$dir/bench.json" || fail "bench --ep JSON lacks the T=6 row"
grep -q '"dispatch_out"' "$dir/bench.json" || fail "bench --ep JSON lacks the bytes"

if "$moefuse" run --config "$dir/tiny.yaml" --placement "$dir/placement.json" 2> "$dir/err.txt"; then
  fail "--placement without --ep was accepted"
fi
grep -q -- "--placement" "$dir/err.txt" || fail "the --placement error does not name the option"
echo "run --ep and bench --ep: ok (checksum $single)"
