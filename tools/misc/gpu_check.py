# Copyright (c) mmsecvit contributors. All rights reserved.
"""GPU acceptance check: one command, a few minutes on one GPU, a markdown
report of what CPU tests cannot prove (docs/distributed.md).

Examples:
    # On a machine with one GPU (about 5-8 minutes):
    python tools/misc/gpu_check.py --out work_dirs/gpu_check/report.md
    # The CPU-runnable checks with a tiny model (what the test suite runs):
    python tools/misc/gpu_check.py --dry-run
"""
import argparse
import os
import os.path as osp
import shlex
import sys

import torch

from mmsecvit.analysis.gpu_check import (CHECKS, CheckContext, render_report,
                                         run_checks)
from mmsecvit.engine.cli import add_debug_argument, run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out',
        default='work_dirs/gpu_check/report.md',
        help='where the markdown report is written')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/gpu_check',
        help='scratch directory (demo data, checkpoints, logs)')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='run the CPU-runnable checks on CPU with a tiny arch and tiny '
        'inputs; the CUDA checks report "skipped: no CUDA"')
    parser.add_argument(
        '--checks',
        nargs='+',
        choices=[item.name for item in CHECKS],
        help='run only these checks')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = 'cuda' if torch.cuda.is_available() and not args.dry_run \
        else 'cpu'
    ctx = CheckContext(
        device=device, work_dir=args.work_dir, dry_run=args.dry_run)
    results = run_checks(ctx, args.checks)
    command = shlex.join([
        'python', 'tools/misc/gpu_check.py',
        *(sys.argv[1:] if argv is None else argv)
    ])
    report = render_report(results, ctx, command)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(report)
    for result in results:
        print(f'{result.status:8} {result.name} ({result.seconds:.1f} s)')
    print(f'report: {args.out}')
    if any(result.status == 'failed' for result in results):
        sys.exit(1)


if __name__ == '__main__':
    run_tool(main)
