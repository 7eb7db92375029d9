#!/usr/bin/env bash
# Create .venv with the exact, tested package set (constraints.txt) and install fourd_ns into it (editable).
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# open3d (imported by every ns-export subcommand) needs the Debian package libusb-1.0-0.
if ! ldconfig -p 2>/dev/null | grep -q "libusb-1.0.so.0"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian package libusb-1.0-0 (needed by open3d for ns-export)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "[setup] WARNING: libusb-1.0-0 is missing and this is not root; ns-export will fail until you run:"
    echo "        sudo apt-get install libusb-1.0-0"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "[setup] installing fourd_ns and its pinned dependencies (first run downloads torch and nerfstudio: several GB)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
# ns-render needs an `ffmpeg` on PATH; without a system one, link the binary that the imageio-ffmpeg wheel ships.
if ! command -v ffmpeg >/dev/null && [ ! -e .venv/bin/ffmpeg ]; then
  ln -s "$(.venv/bin/python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" .venv/bin/ffmpeg
fi
.venv/bin/python -c "import fourd_ns, nerfstudio, gsplat, torch; print(f'[setup] ok: torch {torch.__version__}, fourd_ns {fourd_ns.__version__}')"
