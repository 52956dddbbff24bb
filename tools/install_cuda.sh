# Copyright (c) mmsecvit contributors. All rights reserved.
#
# Sourced by tools/install.sh: which CUDA architectures mmcv's ops are built
# for, and where the wheel built for them is cached. Only functions; they
# print their results on stdout and their notes on stderr.

# The compute capabilities of the GPUs visible to $PYTHON's torch, one per
# line (e.g. 8.0); nothing without a GPU or without CUDA in torch.
visible_cuda_capabilities() {
    "${PYTHON:-python}" - <<'PY' 2>/dev/null || true
import torch

if torch.cuda.is_available():
    for index in range(torch.cuda.device_count()):
        print('%d.%d' % torch.cuda.get_device_capability(index))
PY
}

# The arguments (capabilities such as 8.6) as a TORCH_CUDA_ARCH_LIST:
# sorted, each once, separated by ';'.
arch_list_of() {
    printf '%s\n' "$@" | grep -E '^[0-9]+\.[0-9]+$' | sort -t. -k1,1n -k2,2n -u \
        | paste -sd';' -
}

# The TORCH_CUDA_ARCH_LIST mmcv's ops must be built for; empty for CPU ops.
#   cuda_arch_list_for_mmcv TORCH_CUDA [CAPABILITY...]
# TORCH_CUDA is torch.version.cuda ("cpu" for a CPU build), the
# capabilities are those of the visible GPUs. CUDA ops are built when torch
# has CUDA and a GPU is visible or FORCE_CUDA=1; for the architectures in
# TORCH_CUDA_ARCH_LIST when it is set, otherwise for the visible GPUs.
# FORCE_CUDA=1 without a visible GPU needs TORCH_CUDA_ARCH_LIST (torch's
# extension builder fails with an IndexError without it): returns 1.
cuda_arch_list_for_mmcv() {
    local torch_cuda="$1"; shift
    if [[ "$torch_cuda" == cpu ]]; then
        return 0
    fi
    if [[ $# == 0 && "${FORCE_CUDA:-0}" != 1 ]]; then
        echo "torch is a CUDA $torch_cuda build but no GPU is visible: building CPU ops only;" \
            "set FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST (with nvcc installed) to compile the" \
            "CUDA ops too." >&2
        return 0
    fi
    if [[ -n "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
        echo "$TORCH_CUDA_ARCH_LIST"
    elif [[ $# -gt 0 ]]; then
        arch_list_of "$@"
    else
        echo "FORCE_CUDA=1 and no GPU is visible, so the CUDA architectures to build mmcv's" \
            "ops for are unknown: set TORCH_CUDA_ARCH_LIST to the compute capabilities of the" \
            "GPUs that will run mmsecvit, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0' for A100 and" \
            "H100 ('nvidia-smi --query-gpu=compute_cap --format=csv' on those machines" \
            "prints them)." >&2
        return 1
    fi
}

# The folder that keeps mmcv wheels built here for reuse. A wheel only works
# with the python and torch it was built against and, with CUDA ops, with
# torch's CUDA version and the architectures it was built for.
#   mmcv_cache_dir BASE MMCV_VERSION PY_TAG TORCH_VERSION TORCH_CUDA ARCH_LIST
mmcv_cache_dir() {
    local dir="$1/mmcv-$2-$3-torch$4"
    if [[ -n "$6" ]]; then
        dir+="-cu$5-sm$(printf '%s' "$6" | tr -d '.' | tr '; ' '__')"
    fi
    echo "$dir"
}
