#!/usr/bin/env bash
# Set-up and everyday commands. Every command first makes sure the machine has what it needs
# (Debian packages for a virtual display, a .venv with the package and its test tools).
#   bash dev.sh demo     score the built-in sample slide with the default dab-membrane scorer
#                        (opens napari with the widget when a display is available)
#   bash dev.sh test     run the test suites of the plugin and of training/ (what CI runs)
#   bash dev.sh screenshots  remake the README's and the user guide's pictures (docs/images)
#                        in a real napari viewer (under Xvfb when there is no display)
#   bash dev.sh setup    only install
set -euo pipefail
cd "$(dirname "$0")"

VENV=${NAPARI_HER2_VENV:-.venv}
PY=${PYTHON:-python3}
APT_PACKAGES="xvfb xauth libgl1-mesa-dri libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 poppler-utils"

apt_setup() {
  local missing=()
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "dev.sh: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

venv_setup() {
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.napari-her2-installed"
  local want
  want=$(cat pyproject.toml training/pyproject.toml | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # the CPU build of torch first, pinned, so nothing pulls a multi-GB CUDA build
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".[testing,dicom,bench]"
  "$VENV/bin/python" -m pip install -q -e "training/[testing]"
  echo "$want" > "$stamp"
}

setup() {
  if command -v apt-get >/dev/null 2>&1; then apt_setup; fi
  venv_setup
}

cmd=${1:-demo}
shift || true
case "$cmd" in
  setup) setup ;;
  demo)  setup; exec "$VENV/bin/napari-her2" demo "$@" ;;
  test)  setup
         # two sessions: each suite has its own conftest and data helpers
         "$VENV/bin/python" -m pytest "$@"
         exec "$VENV/bin/python" -m pytest training/tests "$@" ;;
  screenshots) setup
         if [ -n "${DISPLAY:-}" ]; then exec "$VENV/bin/python" docs/make_screenshots.py "$@"; fi
         exec xvfb-run -a -s "-screen 0 1920x1200x24" "$VENV/bin/python" docs/make_screenshots.py "$@" ;;
  *) echo "usage: bash dev.sh [demo|test|setup|screenshots] [args...]" >&2; exit 2 ;;
esac
