# Copyright (c) mmsecvit contributors. All rights reserved.
"""Latency and peak memory of the SecViT backbones against a plainly
written SEC attention and mmdet's Swin-T, side by side in one run.

Every case runs in a fresh process (see :mod:`mmsecvit.analysis.benchmark` for
how memory is measured); with ``--alternate`` the cases of one task and
input size share a process and take turns, one timed run each. Writes a
markdown table and a bar chart.

Examples:
    # The figures of docs/benchmark.md (CPU, 2 threads; long):
    python tools/analysis_tools/benchmark.py --archs s \
        --sizes 224x224 512x512 800x1333 --train-sizes 800x1333 \
        --out docs/benchmark_results.md --plot docs/benchmark.png
    # SecViT-S with and without the short-cluster kernel next to Swin-T,
    # alternating in one process per size (steadier ratios):
    python tools/analysis_tools/benchmark.py --archs s --impls fast sdpa \
        --modes cluster_size --sizes 224x224 512x512 --alternate \
        --rounds 3 --repeats 5 --out /tmp/ab.md --plot ''
    # The backbone in ONNX Runtime next to PyTorch eager (docs/deployment.md):
    python tools/analysis_tools/benchmark.py --archs s --impls fast \
        --runtime onnxruntime --sizes 224x224 512x512 800x1333 \
        --out docs/onnx_benchmark_results.md --plot ''
    # The GPU table (docs/benchmark.md): SecViT-T/S and Swin-T, fp32 and
    # AMP, eager and compiled, every with_cp mode, Mask R-CNN iterations:
    python tools/analysis_tools/benchmark.py --device cuda --archs t s \
        --impls fast --sizes 224x224 512x512 800x1333 \
        --train-sizes 800x1333 --det-train-sizes 800x1333 \
        --amp none bf16 fp16 --compile off on blocks --repeats 20 --warmup 5 \
        --out docs/benchmark_results_cuda.md --plot docs/benchmark_cuda.png
"""
import argparse

from mmsecvit.analysis.benchmark import (AMP_DTYPES, DEFAULT_IMPLS, IMPLS,
                                         KEEP_HEAP_ENV, MODES, RUNTIMES,
                                         build_cases, parse_size,
                                         run_benchmark)
from mmsecvit.engine.cli import (add_debug_argument, argument_type,
                                 parse_device, run_tool)
from mmsecvit.models import parse_arch

#: --train-with-cp names and the ``with_cp`` values they stand for.
WITH_CP_CHOICES = {'none': False, 'selective': 'selective', 'full': True}
COMPILE_CHOICES = {'off': False, 'on': True, 'blocks': 'blocks'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--archs', nargs='+', type=argument_type(parse_arch),
        default=['small'],
        help='SecViT archs: tiny small base large (or t s b l), or a JSON '
        'dict with embed_dims, depths, num_heads, num_clusters')
    parser.add_argument(
        '--sizes', nargs='*', type=argument_type(parse_size),
        default=[(224, 224), (512, 512), (800, 1333)],
        help='inference input sizes, HxW')
    parser.add_argument(
        '--train-sizes', nargs='*', type=argument_type(parse_size),
        default=[],
        help='input sizes of training cases (forward + backward, '
        'with and without activation checkpointing)')
    parser.add_argument('--train-batch', type=int, default=2)
    parser.add_argument(
        '--train-with-cp',
        nargs='+',
        default=['none', 'selective', 'full'],
        choices=list(WITH_CP_CHOICES),
        help='activation checkpointing of the training cases (selective: '
        'SecViT only; Swin-T runs the others)')
    parser.add_argument('--modes', nargs='+', default=list(MODES),
                        choices=MODES)
    parser.add_argument(
        '--impls', nargs='+', default=list(DEFAULT_IMPLS), choices=IMPLS,
        help="SecViT's attention: fast (as it is), sdpa (every cluster "
        'through SDPA, the short-cluster CPU kernel off) and reference (the '
        "paper's, written plainly); training cases: fast, and sdpa if given")
    parser.add_argument(
        '--runtime', default='pytorch', choices=RUNTIMES,
        help='onnxruntime: also run the backbones exported to ONNX (static '
        'shape per size) in ONNX Runtime on the CPU, next to the eager rows '
        '(inference only)')
    parser.add_argument('--no-swin', action='store_true',
                        help="leave out mmdet's Swin-T")
    parser.add_argument(
        '--det-train-sizes', nargs='*', type=parse_size, default=[],
        help='input sizes of whole Mask R-CNN training iterations '
        '(batch --train-batch)')
    parser.add_argument(
        '--amp', nargs='+', default=['none'], choices=['none', *AMP_DTYPES],
        help='autocast dtypes to measure each case in')
    parser.add_argument(
        '--compile', nargs='+', default=['off'],
        choices=list(COMPILE_CHOICES),
        help='measure each case eagerly (off) and/or through torch.compile: '
        'the whole backbone (on) or each of its blocks with dynamic '
        'shapes (blocks)')
    parser.add_argument(
        '--limit-size', type=int, default=4096,
        help='side of the fp32 matrix product that measures the '
        "machine's arithmetic limit in every measuring process")
    parser.add_argument(
        '--no-macs', action='store_true',
        help='skip counting multiply-adds and timing the matrix product')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', type=argument_type(parse_device),
                        default='cpu', help='cpu or cuda')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch.set_num_threads for CPU runs')
    parser.add_argument(
        '--rounds', type=int, default=1,
        help='measure every case once per round and pool the timed runs '
        '(interleaves the cases in time, so drift of the machine affects '
        'all rows alike)')
    parser.add_argument(
        '--alternate', action='store_true',
        help='measure the cases of each task and input size in one '
        'process, one timed run of each in turn (steadier ratios between '
        'rows; CPU peak memory is then not measured)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--keep-heap', action='store_true',
        help='run the measuring processes with glibc malloc keeping freed '
        'memory for reuse (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) '
        'instead of returning every block above 32 MiB to the kernel, so '
        'that re-faulting large maps is not timed; see docs/benchmark.md')
    parser.add_argument('--out', default='docs/benchmark_results.md',
                        help='markdown table to write')
    parser.add_argument('--plot', default='docs/benchmark.png',
                        help='PNG bar chart to write ("" for none)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cases = build_cases(
        args.archs,
        args.sizes,
        modes=args.modes,
        impls=args.impls,
        swin=not args.no_swin,
        train_sizes=args.train_sizes,
        train_batch=args.train_batch,
        runtime=args.runtime,
        amps=[None if amp == 'none' else amp for amp in args.amp],
        compiles=[COMPILE_CHOICES[value] for value in args.compile],
        det_train_sizes=args.det_train_sizes,
        train_with_cp=[WITH_CP_CHOICES[name] for name in args.train_with_cp],
        count_macs=not args.no_macs,
        limit_size=args.limit_size,
        batch=args.batch,
        device=args.device,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats)
    env = KEEP_HEAP_ENV if args.keep_heap else None
    if env:
        print('measuring processes run with ' +
              ' '.join(f'{k}={v}' for k, v in env.items()))
    run_benchmark(
        cases,
        args.out,
        args.plot or None,
        env=env,
        rounds=args.rounds,
        alternate=args.alternate)
    print(f'Table written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
