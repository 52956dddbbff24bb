#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#     bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# Preemptible partitions and time limits (docs/distributed.md, "Preemption"):
# on SIGTERM (preemption, scancel) or SIGUSR1 every rank finishes its
# iteration and the run stops with a checkpoint; on SIGUSR1 it also requeues
# the job (`scontrol requeue`), which then resumes by itself. Ask for SIGUSR1
# before the time limit with SRUN_ARGS="--signal=USR1@120" (not B:USR1, which
# only reaches the batch shell), and submit through sbatch so that the job
# can be requeued:
#     sbatch --requeue --signal=USR1@120 -p PARTITION --gres=gpu:8 --ntasks=8 \
#         --ntasks-per-node=8 --cpus-per-task=5 \
#         --wrap "bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR"

set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=("${@:5}")

# SRUN_ARGS stays unquoted: it may hold several srun options.
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "${PYTHON:-python}" -u "$(dirname "$0")"/train.py "${CONFIG}" --work-dir="${WORK_DIR}" --launcher="slurm" "${PY_ARGS[@]}"
