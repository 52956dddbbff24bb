#!/usr/bin/env bash
# Copyright (c) mmsecvit contributors. All rights reserved.
#
# Installs whatever mmsecvit needs that the active python is missing, and
# nothing else. Safe to run again and again: a second run only checks.
#
#   bash tools/install.sh            # runtime stack + mmsecvit (editable)
#   bash tools/install.sh --tests    # ... plus what the test suite needs
#
# It installs into the python on PATH (override with PYTHON=/path/to/python);
# create and activate a virtual environment first if you want one.
#
# Environment variables (all optional):
#   MMSECVIT_WHEELHOUSE      folder or URL holding a prebuilt mmcv wheel
#                            (tried with --find-links before building;
#                            ../shared/wheelhouse next to the checkout is
#                            tried too when it exists; set to "none" to skip
#                            both).
#   MMSECVIT_CACHE_DIR       where mmcv wheels built here are kept for reuse
#                            (default ~/.cache/mmsecvit/wheels).
#   MMSECVIT_TORCH_SPEC      torch to install when none is installed
#                            (default torch==2.13.0).
#   MMSECVIT_TORCH_INDEX_URL index to get torch from, e.g.
#                            https://download.pytorch.org/whl/cpu
#   FORCE_CUDA=1             build mmcv's CUDA ops on a machine without a
#                            visible GPU (needs nvcc matching torch's CUDA
#                            and TORCH_CUDA_ARCH_LIST).
#   TORCH_CUDA_ARCH_LIST     compute capabilities to build the CUDA ops for,
#                            e.g. '8.0;9.0' (default: the visible GPUs').
#   MAX_JOBS                 parallel compile jobs for mmcv (default: nproc).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# The versions tested together (see README "Installation"). Anything already
# installed inside the ranges mmsecvit supports is kept as it is.
TORCH_SPEC="${MMSECVIT_TORCH_SPEC:-torch==2.13.0}"
MMENGINE_PIN="mmengine==0.10.7"
MMCV_VERSION="2.1.0"
MMDET_PIN="mmdet==3.3.0"
MMSEG_PIN="mmsegmentation==1.2.2"
BUILD_TOOLS=("setuptools>=77,<82" "wheel" "ninja")

WITH_TESTS=0
for arg in "$@"; do
    case "$arg" in
        --tests) WITH_TESTS=1 ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "install.sh: unknown argument '$arg' (expected --tests)" >&2; exit 2 ;;
    esac
done

log() { echo "[mmsecvit install] $*"; }
die() { echo "[mmsecvit install] ERROR: $*" >&2; exit 1; }

# On a Linux machine without a GPU, say before pip starts that PyPI's torch
# for Linux is a CUDA build with NVIDIA's libraries (several GB), and how to
# get the CPU build. (Not found out with pip's --dry-run: pip 23-25 downloads
# every wheel for it.) The install goes on: the CPU index may be out of
# reach where PyPI is not, pip's own find-links may hold a CPU build, and the
# CUDA build runs on CPUs too.
notice_cuda_torch_on_cpu() {
    [[ "$(uname -s)" == Linux ]] || return 0
    command -v nvidia-smi >/dev/null 2>&1 && return 0
    log "note: no GPU is visible (no nvidia-smi). If pip takes torch from PyPI, that is a CUDA build with NVIDIA's libraries (several GB); for the CPU build, stop this and run again with MMSECVIT_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"
}
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check "$@"; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH; set PYTHON=/path/to/python"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 8)' 2>/dev/null \
    || die "python >= 3.8 is required, found $("$PYTHON" --version 2>&1)"
log "python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# Prints the requirements (one per line) that the environment does not
# satisfy; prints nothing when all are met. Needs no package beyond pip.
unmet() {
    "$PYTHON" - "$@" <<'PY'
import re
import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement


def lines(args):
    for arg in args:
        if arg.startswith('@'):
            with open(arg[1:]) as f:
                for line in f:
                    line = line.split('#', 1)[0].strip()
                    if line and not line.startswith('-'):
                        yield line
        else:
            yield arg


for line in lines(sys.argv[1:]):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        print(line)
        continue
    # Local labels such as '+cpu' do not matter for ranges.
    if not req.specifier.contains(re.sub(r'\+.*$', '', version),
                                  prereleases=True):
        print(line)
PY
}

# Installs the given requirements when some of them are unmet.
ensure() {
    local what="$1"; shift
    local missing
    missing="$(unmet "$@")" || die "could not check $what requirements"
    if [[ -z "$missing" ]]; then
        log "$what: already satisfied"
        return 0
    fi
    log "$what: installing $(echo "$missing" | tr '\n' ' ')"
    mapfile -t reqs <<<"$missing"
    pip_install -c "$CONSTRAINTS" "${reqs[@]}"
}

WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT
CONSTRAINTS="$WORK_DIR/constraints.txt"
: >"$CONSTRAINTS"

# 1. Build tools. mmcv's setup.py and mmengine import pkg_resources, which
#    setuptools 82 removed; torch 2.13 wants setuptools >= 77.
missing="$(unmet "${BUILD_TOOLS[@]}")"
if [[ -n "$missing" ]]; then
    log "build tools: installing ${BUILD_TOOLS[*]}"
    pip_install "${BUILD_TOOLS[@]}"
else
    log "build tools: already satisfied"
fi
echo "setuptools>=77,<82" >>"$CONSTRAINTS"

# 2. torch. An installed torch (CPU or a CUDA build the user chose) is kept:
#    an unpinned 'pip install torch' would pull a multi-GB CUDA build.
# mmsecvit needs torch>=2.6.0 (mmsecvit/utils/version_check.py,
# MIN_TORCH_VERSION); an older one is kept too, so say so now rather than
# after compiling mmcv against it.
MIN_TORCH="torch>=2.6.0.dev0"  # its pre-releases too (e.g. NVIDIA containers' 2.6.0a0)
if [[ -z "$(unmet torch)" ]]; then
    if [[ -n "$(unmet "$MIN_TORCH")" ]]; then
        die "the installed torch ($("$PYTHON" -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null || echo unknown)) is too old: mmsecvit needs torch 2.6 or newer. Install a newer torch first (the build for your CUDA driver, e.g. pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128), then run this again."
    fi
    log "torch: already installed, kept as it is"
else
    log "torch: none installed, installing $TORCH_SPEC"
    if [[ -z "${MMSECVIT_TORCH_INDEX_URL:-}" ]]; then
        notice_cuda_torch_on_cpu
    fi
    if [[ -n "${MMSECVIT_TORCH_INDEX_URL:-}" ]]; then
        pip_install "$TORCH_SPEC" --index-url "$MMSECVIT_TORCH_INDEX_URL"
    else
        pip_install "$TORCH_SPEC"
    fi
fi
# ``read`` fails at the end of its input (torch printed nothing): the check
# below reports it, not ``set -e``.
read -r TORCH_VERSION TORCH_CUDA < <("$PYTHON" -c \
    'import torch; print(torch.__version__, torch.version.cuda or "cpu")') \
    || true
[[ -n "${TORCH_VERSION:-}" ]] || die "torch is installed but does not import; run: $PYTHON -c 'import torch'"
log "torch: $TORCH_VERSION (CUDA: $TORCH_CUDA)"
# Nothing below may replace this torch.
echo "torch==$TORCH_VERSION" >>"$CONSTRAINTS"

# mmcv needs CUDA ops where torch has CUDA and a GPU is visible (or
# FORCE_CUDA=1), built for these architectures; empty for CPU ops.
# shellcheck source=tools/install_cuda.sh
source "$REPO_ROOT/tools/install_cuda.sh"
mapfile -t GPU_CAPABILITIES < <(visible_cuda_capabilities)
CUDA_ARCH_LIST="$(cuda_arch_list_for_mmcv "$TORCH_CUDA" \
    "${GPU_CAPABILITIES[@]+"${GPU_CAPABILITIES[@]}"}")" || exit 1
if [[ -n "$CUDA_ARCH_LIST" ]]; then
    export TORCH_CUDA_ARCH_LIST="$CUDA_ARCH_LIST"
    log "mmcv: CUDA ops needed, for compute capabilities $CUDA_ARCH_LIST"
fi

# 3. mmengine (pure python) and the small packages mmcv needs at run time.
missing="$(unmet "mmengine>=0.10.0,<1.0.0")"
if [[ -n "$missing" ]]; then log "mmengine: installing $MMENGINE_PIN"; pip_install -c "$CONSTRAINTS" "$MMENGINE_PIN"
else log "mmengine: already satisfied"; fi
ensure "mmcv dependencies" numpy addict packaging Pillow pyyaml yapf opencv-python

# 4. mmcv with its compiled ops. 'import mmcv' alone is not enough: a build
#    without ops (or one bound to another torch) imports fine and fails later.
#    Where CUDA ops are needed, a CPU-only build (from a cache, or built on a
#    node without GPU) must fail here too: the ops also run on CUDA tensors
#    when a GPU is visible.
mmcv_works() {
    "$PYTHON" - "$MMCV_VERSION" "${CUDA_ARCH_LIST:+cuda}" <<'PY' >/dev/null 2>&1
import sys

import mmcv
import torch
from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms

assert mmcv.__version__ == sys.argv[1], mmcv.__version__
devices = ['cpu']
if sys.argv[2] == 'cuda':
    assert get_compiling_cuda_version() != 'not available', 'no CUDA ops'
    if torch.cuda.is_available():
        devices.append('cuda')
for device in devices:
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]], device=device)
    nms(boxes, torch.tensor([0.9, 0.8], device=device), 0.5)
    RoIAlign((2, 2), 1.0)(torch.rand(1, 1, 8, 8, device=device),
                          torch.tensor([[0., 0., 0., 4., 4.]], device=device))
PY
}

try_wheel_from() {
    local source="$1"
    log "mmcv: trying a prebuilt wheel from $source"
    if pip_install --no-index --no-deps --force-reinstall --find-links "$source" \
            "mmcv==$MMCV_VERSION" >"$WORK_DIR/mmcv-wheel.log" 2>&1 && mmcv_works; then
        log "mmcv: installed from $source, ops work with torch $TORCH_VERSION"
        return 0
    fi
    log "mmcv: the wheel from $source does not fit this python/torch; moving on"
    "$PYTHON" -m pip uninstall -y mmcv >/dev/null 2>&1 || true
    return 1
}

# Compiles mmcv from the registry's source, keeps the wheel in the cache
# and prints a progress line every 30 s (ninja's [done/total] counter).
build_mmcv() {
    # The log goes next to the cache: it must outlive a failed run.
    local cache="$1" build_log="$1/mmcv-build.log"
    local jobs="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
    local cuda_note="CPU ops"
    [[ -z "$CUDA_ARCH_LIST" ]] || cuda_note="CUDA $TORCH_CUDA ops for $CUDA_ARCH_LIST"
    log "mmcv: building mmcv==$MMCV_VERSION from source with $cuda_note, $jobs jobs."
    log "mmcv: this takes ~10-21 minutes on 2 cores (once: the wheel is cached in $cache)."
    mkdir -p "$cache"
    log "mmcv: full build log: $build_log"
    MMCV_WITH_OPS=1 MAX_JOBS="$jobs" "$PYTHON" -m pip wheel -v --no-deps \
        --no-build-isolation --no-binary mmcv -w "$WORK_DIR/wheels" \
        "mmcv==$MMCV_VERSION" >"$build_log" 2>&1 &
    local pid=$! start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        sleep 30 &
        wait $! || true
        kill -0 "$pid" 2>/dev/null || break
        local step
        step="$(grep -o '^ *\[[0-9]*/[0-9]*\]' "$build_log" | tail -n 1 | tr -d ' ' || true)"
        log "mmcv: still building, $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s" \
            "elapsed${step:+, compiled $step}"
    done
    if ! wait "$pid"; then
        tail -n 40 "$build_log" >&2
        die "building mmcv failed (full log above: $build_log). A C++ compiler (g++) and" \
            "python headers are needed; see README 'Installation'."
    fi
    log "mmcv: built in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
    cp "$WORK_DIR"/wheels/mmcv-*.whl "$cache/"
    pip_install --no-index --no-deps --force-reinstall --find-links "$cache" "mmcv==$MMCV_VERSION"
    mmcv_works || die "mmcv was built but its ops do not import; see $build_log"
}

if mmcv_works; then
    log "mmcv: $MMCV_VERSION with working ops already installed"
else
    # The wheel a build leaves behind is only valid for this python + torch
    # (+ CUDA version and architectures for CUDA ops).
    PY_TAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    CACHE="$(mmcv_cache_dir "${MMSECVIT_CACHE_DIR:-$HOME/.cache/mmsecvit/wheels}" \
        "$MMCV_VERSION" "$PY_TAG" "$TORCH_VERSION" "$TORCH_CUDA" "$CUDA_ARCH_LIST")"
    sources=()
    if [[ "${MMSECVIT_WHEELHOUSE:-}" != none ]]; then
        [[ -n "${MMSECVIT_WHEELHOUSE:-}" ]] && sources+=("$MMSECVIT_WHEELHOUSE")
        [[ -d "$REPO_ROOT/../shared/wheelhouse" ]] && sources+=("$(cd "$REPO_ROOT/../shared/wheelhouse" && pwd)")
    fi
    ls "$CACHE"/mmcv-*.whl >/dev/null 2>&1 && sources+=("$CACHE")
    installed=0
    for source in "${sources[@]+"${sources[@]}"}"; do
        if try_wheel_from "$source"; then installed=1; break; fi
    done
    [[ $installed == 1 ]] || build_mmcv "$CACHE"
fi
echo "mmcv==$MMCV_VERSION" >>"$CONSTRAINTS"

# 5. The downstream libraries, at the tested pins when missing.
missing="$(unmet "mmdet>=3.0.0,<3.4.0")"
if [[ -n "$missing" ]]; then log "mmdet: installing $MMDET_PIN"; pip_install -c "$CONSTRAINTS" "$MMDET_PIN"
else log "mmdet: already satisfied"; fi
missing="$(unmet "mmsegmentation>=1.0.0,<1.3.0")"
if [[ -n "$missing" ]]; then log "mmsegmentation: installing $MMSEG_PIN"; pip_install -c "$CONSTRAINTS" "$MMSEG_PIN"
else log "mmsegmentation: already satisfied"; fi

# 6. mmsecvit itself (editable, so edits in the checkout take effect) and,
#    for the test command, the test requirements.
ensure "mmsecvit runtime requirements" "@$REPO_ROOT/requirements/runtime.txt" \
    "@$REPO_ROOT/requirements/optional.txt"
if [[ $WITH_TESTS == 1 ]]; then
    ensure "test requirements" "@$REPO_ROOT/requirements/tests.txt"
fi
# find_spec locates the package without importing it (imports are slow).
if (cd "$WORK_DIR" && "$PYTHON" - "$REPO_ROOT" <<'PY') >/dev/null 2>&1; then
import os
import sys
from importlib import metadata, util

metadata.version('mmsecvit')
origin = util.find_spec('mmsecvit').origin
assert os.path.realpath(origin).startswith(
    os.path.realpath(sys.argv[1]) + os.sep)
PY
    log "mmsecvit: already installed from $REPO_ROOT"
else
    log "mmsecvit: installing $REPO_ROOT in editable mode"
    pip_install --no-deps --no-build-isolation -e "$REPO_ROOT"
fi

(cd "$WORK_DIR" && "$PYTHON" -c 'import mmsecvit' ) \
    || die "mmsecvit was installed but does not import (see the error above)"
log "done: torch $TORCH_VERSION (CUDA: $TORCH_CUDA), mmcv $MMCV_VERSION with ops, mmsecvit ready."
