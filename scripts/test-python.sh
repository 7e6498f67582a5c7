#!/usr/bin/env bash
# Builds, installs and tests the Python package on Debian 12 (bookworm):
#   1. installs the Debian packages it needs (C++ toolchain, python3-venv/-dev, python3-numpy, python3-torch,
#      OpenMPI);
#   2. makes a virtual environment from Debian's own /usr/bin/python3 with --system-site-packages, so that Debian's
#      torch (1.13) and numpy are visible in it (a python3 earlier on PATH, e.g. pyenv's, has neither);
#   3. `pip install .[test]` (the README's `pip install .` plus pytest and ml_dtypes), numpy pinned to Debian's so
#      that pip never shadows the numpy Debian's torch was built against;
#   4. runs pytest on tests/python (extra arguments go to pytest).
# Environment: MOEFUSE_PYTHON (default /usr/bin/python3), MOEFUSE_VENV (default build/venv-python),
# MOEFUSE_PIP_FAST=1 (build without pip's build isolation: the build folder build/python/ is reused, so a rebuild
# after an edit is incremental; for development), CMAKE_BUILD_PARALLEL_LEVEL (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { echo "=== $1 ($((SECONDS - start)) s)"; }

python=${MOEFUSE_PYTHON:-/usr/bin/python3}
venv=${MOEFUSE_VENV:-build/venv-python}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export PIP_DISABLE_PIP_VERSION_CHECK=1

step "Debian packages"
# OpenMPI: the package's expert-parallel layer (comm=) and its mpirun tests; without it they skip with a reason.
packages=(cmake ninja-build g++ python3 python3-dev python3-venv python3-numpy python3-torch libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "virtual environment $venv ($python)"
home=$(dirname "$(readlink -f "$python")")
if [ ! -x "$venv/bin/python" ] || ! grep -qx "home = $home" "$venv/pyvenv.cfg" ||
   ! grep -qx "include-system-site-packages = true" "$venv/pyvenv.cfg"; then
  rm -rf "$venv"
  "$python" -m venv --system-site-packages "$venv"
fi
vpy="$venv/bin/python"

constraints="$venv/constraints.txt"
if numpy_version=$("$vpy" -c 'import numpy; print(numpy.__version__)' 2>/dev/null); then
  echo "numpy==$numpy_version" > "$constraints"
else
  : > "$constraints"
fi

step "pip install .[test]"
if [ "${MOEFUSE_PIP_FAST:-0}" = 1 ]; then
  "$vpy" -m pip install -q -c "$constraints" "scikit-build-core>=0.10,<2" "nanobind>=3.0,<4"
  "$vpy" -m pip install -q -c "$constraints" --no-build-isolation ".[test]"
else
  "$vpy" -m pip install -q -c "$constraints" ".[test]"
fi
"$vpy" -c 'import moefuse, numpy; print("moefuse", moefuse.__version__, "numpy", numpy.__version__)'
"$vpy" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null ||
  echo "torch not importable: the torch tests will be skipped"

step "pytest tests/python"
# `python -m pytest` puts the working directory on sys.path; the repository root has no moefuse/ folder, so the
# installed package is the one imported.
"$vpy" -m pytest tests/python -q "$@"
step "done"
