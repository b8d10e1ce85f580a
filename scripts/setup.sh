#!/usr/bin/env bash
# Set up everything gr00t_rlhf_ros needs on a Debian 12 machine without ROS:
# Debian packages (offscreen rendering), a .venv with torch, the ROS 2 Kilted
# wheels from PyPI, MuJoCo, PyAV and the project in editable mode.
# Idempotent: a second run checks a stamp and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.setup-stamp"
want=$(cat scripts/setup.sh requirements.txt setup.py | sha256sum | cut -d" " -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

apt_pkgs="libosmesa6 libgl1 libegl1 libglfw3"
missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV"; $PY -m venv "$VENV"; }
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup] installing Python dependencies (torch is large: first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$STAMP"
echo "[setup] done: $VENV"
