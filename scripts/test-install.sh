#!/usr/bin/env bash
# The C++ package: installs the release build into a temporary prefix, then configures, builds and runs
# examples/cpp-consumer against it with find_package(moefuse). Run after `cmake --build --preset release`.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build/release --prefix "$prefix/install" >/dev/null
cmake -S examples/cpp-consumer -B "$prefix/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix/install" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/consumer"
