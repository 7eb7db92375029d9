#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks for `python -m benchmarks.gpu_check` into .whl/ (git-ignored),
# build fourd_ns's own wheel beside them, and check that they and the working tree stay within the device tool's
# 64 MiB. See docs/gpu_check.md for the run that uses them.
#
# The GPU machine (docs/gpu_check.md) has CPython 3.12, a CUDA build of torch, torchvision, numpy, scipy, opencv,
# matplotlib, tensorboard, rich, jaxtyping and the other packages of its image, and no registry. Carried here is what
# the check imports at run time and that image does not have, found by running the check's CPU dry run in an
# environment holding only that image's packages plus these wheels. Everything is --no-deps: nerfstudio's declared
# dependencies (open3d, wandb, comet-ml, jupyterlab, ...) serve features the check never imports.
#
# Usage: bash benchmarks/prepare_gpu_wheels.sh        (env: PY_VERSION=3.12, DEST=.whl, LIMIT_MIB=64)
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
DEST="${DEST:-.whl}"
LIMIT_MIB="${LIMIT_MIB:-64}"
PYTHON="${PYTHON:-python3}"

# distribution: who imports it during the check
PACKAGES=(
  nerfstudio        # trainer, configs, splatfacto, datamanagers, eval_setup
  gsplat            # the CUDA rasterizer and DefaultStrategy (ships its CUDA sources; JIT-built there)
  tyro              # nerfstudio's configs / ns-train's CLI
  docstring_parser  # tyro
  typeguard         # tyro
  viser             # nerfstudio.data.scene_box (viser.transforms), the viewer modules the trainer imports
  msgspec           # viser
  websockets        # viser
  nerfacc           # nerfstudio.model_components.renderers
  splines           # nerfstudio.viewer.render_panel
  pytorch_msssim    # nerfstudio.models.splatfacto
  tensorly          # nerfstudio.model_components.lib_bilagrid
  pathos            # nerfstudio.data.datamanagers.parallel_datamanager
  ppft              # pathos
  multiprocess      # pathos
  dill              # pathos, multiprocess
  fpsample          # nerfstudio.data.datamanagers.full_images_datamanager
  rawpy             # nerfstudio.process_data (through the colmap dataparser)
  appdirs           # nerfstudio.process_data.colmap_utils
  pyquaternion      # nerfstudio's nuscenes dataparser
  roma              # fourd_ns.geometry.rotations
)
# Versions come from constraints.txt (the tested set), except where no CPython 3.12 manylinux wheel of that
# version exists: fpsample 1.0.2 is an sdist there, and nerfstudio uses only bucket_fps_kdline_sampling, which 0.3.3
# has (and which the check never calls).
declare -A OVERRIDE=([fpsample]=0.3.3)

normalise() { tr 'A-Z_.' 'a-z--' <<<"$1"; }
pin() {
  local name override version
  name="$(normalise "$1")"
  override="${OVERRIDE[$1]:-}"
  if [ -n "$override" ]; then echo "$1==$override"; return; fi
  version="$(while IFS='=' read -r dist _ ver; do
    [ "$(normalise "$dist")" = "$name" ] && echo "$ver"; done < <(grep -E '^[A-Za-z0-9_.-]+==' constraints.txt))"
  if [ -z "$version" ]; then echo "prepare_gpu_wheels: $1 is not pinned in constraints.txt" >&2; exit 1; fi
  echo "$1==$version"
}
SPECS=()
for p in "${PACKAGES[@]}"; do SPECS+=("$(pin "$p")"); done

rm -rf "$DEST" && mkdir -p "$DEST"
PLATFORMS=()
for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
echo "[prepare_gpu_wheels] downloading ${#SPECS[@]} wheels for CPython $PY_VERSION into $DEST/"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${SPECS[@]}" \
  2> >(grep -v "^WARNING: Location" >&2)
echo "[prepare_gpu_wheels] building the fourd_ns wheel"
# From a copy of exactly the files that travel with the call (tracked, and untracked but not ignored): no stale
# build/ or egg-info of this checkout can leak into the wheel, and nothing is written into the checkout.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
travelling_files() {  # tracked (and not deleted) or untracked-but-not-ignored, NUL-separated
  git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c 'for f; do if [ -f "$f" ]; then printf "%s\0" "$f"; fi; done' _
}
travelling_files | xargs -0 cp --parents -t "$src"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$DEST" "$src" 2> >(grep -v "^WARNING: Location" >&2)

count="$(ls "$DEST"/*.whl | wc -l)"
if [ "$count" -ne $((${#SPECS[@]} + 1)) ]; then
  echo "prepare_gpu_wheels: expected $((${#SPECS[@]} + 1)) wheels in $DEST, found $count" >&2; exit 1
fi
wheels="$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)"
# What else travels with the call: tracked files and untracked files that git does not ignore.
tree="$(travelling_files | xargs -0 du -cb | awk '/\ttotal$/ {s += $1} END {print s + 0}')"
limit=$((LIMIT_MIB * 1024 * 1024))
ls -l "$DEST" | awk 'NR > 1 {printf "  %8.1f KiB  %s\n", $5 / 1024, $9}'
awk -v w="$wheels" -v t="$tree" -v l="$LIMIT_MIB" 'BEGIN {
  printf "[prepare_gpu_wheels] wheels %.1f MiB + working tree %.1f MiB = %.1f MiB (limit %d MiB)\n", w / 1048576, t / 1048576, (w + t) / 1048576, l }'
if [ $((wheels + tree)) -gt "$limit" ]; then
  echo "prepare_gpu_wheels: FAILED: the wheels and the working tree exceed the device tool's $LIMIT_MIB MiB" >&2; exit 1
fi
