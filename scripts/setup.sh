#!/usr/bin/env bash
# Set up a .venv for one of the three install profiles (docs/install.md):
#   PROFILE=default     (the default) no ROS distro: Debian packages for offscreen rendering, torch,
#                       the ROS 2 Kilted wheels from PyPI, MuJoCo, rosbags, PyAV -- requirements.txt
#   PROFILE=train       training workstation (GPU, no ROS): requirements/train.txt only
#   PROFILE=ros-distro  on a sourced ROS 2 install (Jazzy/Kilted): a venv that sees the distro's
#                       packages (--system-site-packages) plus requirements/ros-distro.txt
# and the project itself in editable mode.
# Idempotent: a second run checks a stamp and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
PROFILE=${PROFILE:-default}
STAMP="$VENV/.setup-stamp"
case "$PROFILE" in
  default)    reqs=requirements.txt;            venv_args="";           apt_pkgs="libosmesa6 libgl1 libegl1 libglfw3" ;;
  train)      reqs=requirements/train.txt;      venv_args="";           apt_pkgs="" ;;
  ros-distro) reqs=requirements/ros-distro.txt; venv_args="--system-site-packages"; apt_pkgs="libosmesa6 libgl1 libegl1 libglfw3"
              "$PY" -c "import rclpy" 2>/dev/null || { echo "[setup] PROFILE=ros-distro: rclpy is not importable; source /opt/ros/<distro>/setup.bash first" >&2; exit 1; } ;;
  *) echo "[setup] PROFILE=$PROFILE: unknown profile (default, train, ros-distro)" >&2; exit 2 ;;
esac
want=$( (echo "$PROFILE"; cat scripts/setup.sh setup.py requirements.txt requirements/*.txt) | sha256sum | cut -d" " -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV ($PROFILE profile)"; $PY -m venv $venv_args "$VENV"; }
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup] installing Python dependencies from $reqs (torch is large: first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q -r "$reqs"
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$STAMP"
echo "[setup] done: $VENV ($PROFILE profile)"
