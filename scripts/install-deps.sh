#!/usr/bin/env bash
# Installs what moefuse needs to build and test on Debian 12 (bookworm). Idempotent; needs root or sudo.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev   # tests, micro-benchmarks
  libyaml-cpp-dev nlohmann-json3-dev           # config files, safetensors headers
  libcli11-dev                                 # the moefuse command's options
  libcairo2-dev                                # moefuse bench --plot (PNG, SVG)
  clang-14 libclang-rt-14-dev                  # libFuzzer targets
  libopenmpi-dev openmpi-bin                   # expert parallelism across processes (moefuse_ep, mpirun)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
