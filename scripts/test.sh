#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run the whole suite.
#
#   bash scripts/test.sh [extra pytest arguments]
#
# 1. System packages for a virtual X display and Mesa OpenGL (napari's canvas needs a real GL
#    context even when no window is shown); installed with apt-get when missing (needs root or
#    sudo), and the script says which.
# 2. A virtual environment in .venv (override with VENV=...), the CPU build of torch first when
#    no GPU is present (so pip does not pull a multi-GB CUDA build), then the project with its
#    test extras.
# 3. ruff, then pytest; pytest-xvfb starts Xvfb when DISPLAY is unset.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  xvfb xauth libgl1 libegl1 libopengl0 libglx-mesa0 libgl1-mesa-dri libfontconfig1
  libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
  libxcb-xinerama0 libxcb-xinput0 libxcb-xkb1
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo ">>> Installing system packages for the virtual display and OpenGL: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo ">>> System packages for the virtual display are present."
fi

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo ">>> Creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo ">>> GPU found: installing the default (CUDA) build of torch"
    "$PY" -m pip install -q torch
  else
    # CPU-only tip from the README: the CPU build first (a local wheel on the project's machines;
    # elsewhere add --index-url https://download.pytorch.org/whl/cpu)
    echo ">>> No GPU: installing the CPU build of torch"
    "$PY" -m pip install -q torch==2.13.0
  fi
fi
echo ">>> Installing napari-mrepinn with its test extras"
"$PY" -m pip install -q -e ".[testing]"

echo ">>> ruff check"
"$PY" -m ruff check .

echo ">>> pytest"
# pytest's exit 5 ("no tests collected") is a failure here: the suite must run.
"$PY" -m pytest "$@"
