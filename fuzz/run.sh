#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer) in
# build/fuzz, against the parsers' sources only (src/base, src/io: fuzz/CMakeLists.txt), and runs each for SECONDS
# seconds over a seed corpus: files made by make_fuzz_corpus, configs/*.yaml, the test model folders' config.json files,
# and fuzz/corpus/<target>/ (inputs that once found a bug, kept as regression seeds). Grown corpora are kept in
# build/fuzz/corpus/<target> between runs; crashing inputs land in build/fuzz/findings/<target>/.
#
#   fuzz/run.sh SECONDS [TARGET...]      TARGET: config model_config safetensors npy (default: all four)
#
# Exits non-zero as soon as a target finds a crash, a sanitizer report or an exception other than moefuse::Error.
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [config|model_config|safetensors|npy ...]}
shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config model_config safetensors npy)

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/fuzz
# -O1 with line tables: libFuzzer's recommended level, and a build several times faster than -O2 -g under ASan+UBSan.
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -gline-tables-only"

CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -DNDEBUG" \
  -DMOEFUSE_BUILD_FUZZ=ON -DMOEFUSE_BUILD_TESTS=OFF -DMOEFUSE_BUILD_TOOLS=OFF -DMOEFUSE_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j2 --target make_fuzz_corpus $(printf '%s_fuzz ' "${targets[@]}")

seeds=$build/seeds
rm -rf "$seeds"
"$build/fuzz/make_fuzz_corpus" "$seeds"
cp "$root"/configs/*.yaml "$seeds/config/"
# config.json seeds: the test model folders written by transformers (tests/data/models/<family>/config.json).
mkdir -p "$seeds/model_config"
for f in "$root"/tests/data/models/*/config.json; do cp "$f" "$seeds/model_config/$(basename "$(dirname "$f")").json"; done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/findings/$t" "$root/fuzz/corpus/$t"
  echo "== fuzzing $t for $seconds s"
  # safetensors: room for the large-header seeds (about 3.3 MB); the other targets' seeds are small.
  max_len=8192
  [ "$t" = safetensors ] && max_len=4194304
  "$build/fuzz/${t}_fuzz" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/fuzz/$t.dict" -artifact_prefix="$build/findings/$t/" -print_final_stats=1 \
    "$build/corpus/$t" "$seeds/$t" "$root/fuzz/corpus/$t"
done
echo "== no findings"
