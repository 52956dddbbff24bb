# Copyright (c) mmsecvit contributors. All rights reserved.
"""The GPU acceptance check: what CPU tests cannot prove, in minutes on one
GPU, written up as a markdown report.

Each check is a small function that takes a :class:`CheckContext`, returns
the lines it reports and raises :class:`CheckFailed` when what it checks
does not hold. Checks that need CUDA are skipped without it; the others
run on CPU too, with a tiny arch and tiny inputs, when the context is a dry
run (``tools/misc/gpu_check.py --dry-run``, run by the test suite), so the
check code itself is tested before a GPU is spent on it.
"""
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mmsecvit.analysis.mixed_precision import cluster_agreement
from mmsecvit.datasets.demo import make_demo_data
from mmsecvit.models import SecViT
from mmsecvit.models.layers import record_cluster_assignments
from mmsecvit.testing import free_port, randomize_weights, spawn_ranks
from mmsecvit.testing.archs import TEST_ARCH
from mmsecvit.utils.collect_env import collect_env
from mmsecvit.utils.errors import ConfigValueError

#: What a single GPU cannot show, said in every report.
NOT_CHECKED = [
    'NCCL with 2 or more ranks: NCCL refuses two ranks on one GPU '
    '("Duplicate GPU detected"), so the two-rank check runs over gloo '
    'with CUDA tensors; the NCCL all-reduce of gradients and SyncBN '
    'statistics between GPUs is not exercised.',
    'Several nodes (`tools/slurm_train.sh`, rendezvous, requeue on a real '
    'cluster).',
    'Speed-up from more GPUs and `--auto-scale-lr` at 8 GPUs x 2 images.',
]


class CheckFailed(Exception):
    """What a check checks does not hold; the message says what."""


class CheckSkipped(Exception):
    """A check cannot run here; the message says why."""


@dataclass
class CheckContext:
    """Where and at what scale the checks run.

    Args:
        device (str): 'cuda' or 'cpu'.
        work_dir (str): Scratch directory for data, configs, checkpoints.
        dry_run (bool): Tiny arch and tiny inputs, for a quick run of the
            check code on CPU.
        repo_root (str): The mmsecvit checkout whose tools and configs the
            pipeline checks run.
        python (str): The interpreter for the tools.
        timeout (float): Seconds each tool run may take, and the two
            ranks of the two-rank check together.
    """
    device: str
    work_dir: str
    dry_run: bool = False
    repo_root: str = field(default_factory=lambda: osp.dirname(
        osp.dirname(osp.dirname(osp.abspath(__file__)))))
    python: str = sys.executable
    timeout: float = 300.

    @property
    def cuda(self) -> bool:
        return self.device.startswith('cuda')

    @property
    def arch(self):
        # The test arch: every code path of SecViT-S at a fraction of the
        # cost.
        return TEST_ARCH if self.dry_run else 'small'

    def model(self, **kwargs) -> SecViT:
        """SecViT (SecViT-S, or the tiny arch in a dry run) in float32 with
        weights at a trained network's scale, on the CPU."""
        kwargs.setdefault('drop_path_rate', 0.)
        return randomize_weights(SecViT(self.arch, **kwargs))

    def images(self,
               batch: int,
               size: Sequence[int],
               seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 3, *size, generator=gen)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


@dataclass
class CheckResult:
    """The outcome of one check: 'passed', 'failed' or 'skipped'."""
    name: str
    title: str
    status: str
    lines: List[str]
    seconds: float


@dataclass
class Check:
    name: str
    title: str
    function: Callable[[CheckContext], List[str]]
    needs_cuda: bool


CHECKS: List[Check] = []


def check(name: str, title: str, needs_cuda: bool = False):
    """Register a check function under ``name``, in report order."""

    def register(function):
        CHECKS.append(Check(name, title, function, needs_cuda))
        return function

    return register


# ----------------------------------------------------------------------
# helpers


def max_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference over the largest absolute value."""
    actual, expected = actual.double().cpu(), expected.double().cpu()
    scale = expected.abs().max().clamp_min(1e-30)
    return ((actual - expected).abs().max() / scale).item()


def _format_bytes(num: int) -> str:
    return f'{num / 2**30:.2f} GiB'


def run_python(ctx: CheckContext, args: List[str], log_name: str) -> List[str]:
    """Run ``python ARGS`` in the repository; raise CheckFailed with the
    end of its output if it fails. Returns the report line."""
    log_path = osp.join(ctx.work_dir, f'{log_name}.log')
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        try:
            path = os.pathsep.join(
                filter(None, [ctx.repo_root,
                              os.environ.get('PYTHONPATH')]))
            process = subprocess.run([ctx.python, *args],
                                     cwd=ctx.repo_root,
                                     env=dict(os.environ, PYTHONPATH=path),
                                     stdout=log,
                                     stderr=subprocess.STDOUT,
                                     timeout=ctx.timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            code = f'timeout after {ctx.timeout:.0f} s'
    seconds = time.perf_counter() - start
    if code != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise CheckFailed(f'`python {" ".join(args)}` ended with {code} '
                          f'(log {log_path}):\n```\n{tail}\n```')
    return [f'`python {" ".join(args)}`: ok in {seconds:.0f} s']


def distributed_run(port: int) -> List[str]:
    return [
        '-m', 'torch.distributed.run', '--nproc_per_node', '1',
        '--master_port',
        str(port)
    ]


# ----------------------------------------------------------------------
# the checks, in report order


@check('environment', 'Environment and mmcv CUDA ops')
def check_environment(ctx: CheckContext) -> List[str]:
    lines = [
        f'- {key}: {value}' for key, value in collect_env().items()
        if key not in ('PyTorch compiling details', 'numpy_random_seed')
    ]
    if not ctx.cuda:
        return lines + ['- mmcv ops on CUDA tensors: skipped: no CUDA']
    from mmcv.ops import nms, roi_align
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, generator=gen) * 200
    boxes = torch.cat(
        [corners, corners + 10 + 50 * torch.rand(200, 2, generator=gen)],
        dim=1)
    scores = torch.rand(200, generator=gen)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
    if not torch.equal(keep_cpu, keep_cuda.cpu()):
        raise CheckFailed('mmcv nms on CUDA keeps other boxes than on CPU.')
    feats = torch.randn(2, 8, 64, 64, generator=gen)
    rois = torch.cat([torch.randint(0, 2, (200, 1)).float(), boxes / 4], dim=1)
    pooled_cpu = roi_align(feats, rois, (7, 7), 1.0, 2, 'avg', True)
    pooled_cuda = roi_align(feats.cuda(), rois.cuda(), (7, 7), 1.0, 2, 'avg',
                            True)
    error = max_relative_error(pooled_cuda, pooled_cpu)
    if error > 1e-4:
        raise CheckFailed(f'mmcv roi_align CUDA vs CPU: relative error '
                          f'{error:.2e}')
    return lines + [
        f'- mmcv ops on CUDA tensors: nms equal to CPU, roi_align relative '
        f'error {error:.1e}'
    ]


@check('cuda_vs_cpu', 'SecViT-S on CUDA equals CPU', needs_cuda=True)
def check_cuda_vs_cpu(ctx: CheckContext) -> List[str]:
    """float32 at 800x1344 (whole clusters) and 800x1333 (a shorter last
    cluster in every stage), and float64 where the clusters must agree
    exactly."""
    lines = [
        '| input | dtype | max relative error per output | '
        'stage-0 block-0 cluster agreement |', '|---|---|---|---|'
    ]
    cases = [((800, 1344), torch.float32), ((800, 1333), torch.float32),
             ((420, 612), torch.float64)]
    for size, dtype in cases:
        model = ctx.model().eval().to(dtype)
        x = ctx.images(1, size).to(dtype)
        with torch.no_grad(), record_cluster_assignments(model) as cpu_rec:
            expected = model(x)
        model.to(ctx.device)
        with torch.no_grad(), record_cluster_assignments(model) as dev_rec:
            outs = model(x.to(ctx.device))
        errors = [max_relative_error(o, e) for o, e in zip(outs, expected)]
        name = 'layers.0.blocks.0.attn'
        agreement = (cpu_rec[name][0] == dev_rec[name][0]).double().mean()
        lines.append(f'| {size[0]}x{size[1]} | {str(dtype)[6:]} | ' +
                     ', '.join(f'{e:.1e}'
                               for e in errors) + f' | {agreement:.4f} |')
        # float32: rounding may swap tokens of (nearly) equal similarity at
        # a cluster boundary; float64 leaves no such ties.
        if agreement < 0.99 or (dtype == torch.float64 and max(errors) > 1e-9):
            raise CheckFailed('\n'.join(lines))
    return lines


@check(
    'sdpa_backends',
    'SDPA: flash and memory-efficient equal to math',
    needs_cuda=True)
def check_sdpa_backends(ctx: CheckContext) -> List[str]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    lines = []
    cases = [(SDPBackend.FLASH_ATTENTION, torch.float16),
             (SDPBackend.FLASH_ATTENTION, torch.bfloat16),
             (SDPBackend.EFFICIENT_ATTENTION, torch.float32)]
    gen = torch.Generator().manual_seed(0)
    # The head dimensions of SecViT: 32 in every stage of T/S, 16 in the
    # first stage of B/L.
    for head_dims in (16, 32):
        q, k, v = (
            torch.randn(4, 8, 2100, head_dims, generator=gen)
            for _ in range(3))
        expected = F.scaled_dot_product_attention(q.double(), k.double(),
                                                  v.double())
        for backend, dtype in cases:
            args = [t.to(ctx.device, dtype) for t in (q, k, v)]
            with sdpa_kernel(backend):
                fused = F.scaled_dot_product_attention(*args)
            with sdpa_kernel(SDPBackend.MATH):
                plain = F.scaled_dot_product_attention(*args)
            fused_error = max_relative_error(fused, expected)
            math_error = max_relative_error(plain, expected)
            lines.append(f'- {backend.name} {str(dtype)[6:]} d={head_dims}: '
                         f'relative error {fused_error:.1e} (math '
                         f'{math_error:.1e}) against float64')
            if fused_error > 2 * math_error + 1e-6:
                raise CheckFailed('\n'.join(lines))
    # The backbone's own calls must be accepted by the fused kernels
    # (4-D, last dimension contiguous), else SDPA raises here.
    model = ctx.model().eval().to(ctx.device)
    x = ctx.images(1, (512, 512)).to(ctx.device)
    for backend, dtype in cases:
        with torch.no_grad(), sdpa_kernel(backend), torch.autocast(
                'cuda', dtype=dtype, enabled=dtype != torch.float32):
            model(x)
        lines.append(f'- SecViT-S forward at 512x512 with only '
                     f'{backend.name} ({str(dtype)[6:]}): ok')
    return lines


@check('with_cp', 'with_cp False / True / selective: equal gradients')
def check_with_cp(ctx: CheckContext) -> List[str]:
    size, batch = ((32, 48), 2) if ctx.dry_run else ((512, 512), 2)
    x = ctx.images(batch, size).to(ctx.device)
    lines = [
        f'Input {batch}x3x{size[0]}x{size[1]}, train mode.', '',
        '| with_cp | forward + backward | peak memory | max relative '
        'gradient difference to False |', '|---|---|---|---|'
    ]
    reference = None
    for with_cp in (False, True, 'selective'):
        model = ctx.model(with_cp=with_cp).train().to(ctx.device)
        times = []
        for _ in range(3):  # the first round warms up
            model.zero_grad()
            if ctx.cuda:
                torch.cuda.reset_peak_memory_stats()
            ctx.synchronize()
            start = time.perf_counter()
            loss = sum(out.float().square().mean() for out in model(x))
            loss.backward()
            ctx.synchronize()
            times.append(time.perf_counter() - start)
        grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters()}
        memory = _format_bytes(torch.cuda.max_memory_allocated()) \
            if ctx.cuda else 'n/a (CPU)'
        if reference is None:
            reference, difference = grads, 0.
        else:
            difference = max(
                max_relative_error(grads[n], g) for n, g in reference.items())
        lines.append(f'| {with_cp} | {min(times[1:]) * 1e3:.0f} ms | '
                     f'{memory} | {difference:.1e} |')
        if difference > 1e-4:
            raise CheckFailed('\n'.join(lines))
    return lines


@check('sync_debug', 'No host syncs in the backbone', needs_cuda=True)
def check_sync_debug(ctx: CheckContext) -> List[str]:
    model = ctx.model().to(ctx.device)
    x = ctx.images(2, (512, 512)).to(ctx.device)
    lines = []

    def inference(dtype):
        with torch.no_grad(), torch.autocast(
                'cuda', dtype=dtype, enabled=dtype != torch.float32):
            model.eval()(x)

    def training(dtype):
        with torch.autocast(
                'cuda', dtype=dtype, enabled=dtype != torch.float32):
            loss = sum(out.float().sum() for out in model.train()(x))
        loss.backward()

    dtypes = [torch.float32, torch.float16]
    if _amp_supported(ctx, torch.bfloat16) is None:
        dtypes.append(torch.bfloat16)
    for run in (inference, training):
        for dtype in dtypes:
            # Warm-up outside the debug mode: cuDNN/cuBLAS set-up may sync.
            run(dtype)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode('error')
            try:
                run(dtype)
            except RuntimeError as err:
                raise CheckFailed(f'{run.__name__} ({dtype}) synchronised '
                                  f'with the host: {err}')
            finally:
                torch.cuda.set_sync_debug_mode(0)
            lines.append(f'- {run.__name__} {str(dtype)[6:]}: no sync')
    return lines


def _amp_supported(ctx: CheckContext, dtype: torch.dtype) -> Optional[str]:
    """Why ``dtype`` autocast cannot run here, or None."""
    if ctx.cuda and dtype == torch.bfloat16 and \
            not torch.cuda.is_bf16_supported(including_emulation=False):
        return 'no native bf16 on this GPU'
    return None


@check('amp_steps', 'fp16 and bf16 AMP: finite training steps')
def check_amp_steps(ctx: CheckContext) -> List[str]:
    size, steps = ((32, 32), 3) if ctx.dry_run else ((256, 256), 20)
    device_type = 'cuda' if ctx.cuda else 'cpu'
    lines = [
        f'{steps} AdamW steps, batch 2 at {size[0]}x{size[1]}, loss: '
        'mean square of the stage outputs.', '',
        '| dtype | first loss | last loss | GradScaler scale |',
        '|---|---|---|---|'
    ]
    for dtype in (torch.float16, torch.bfloat16):
        reason = _amp_supported(ctx, dtype)
        if reason:
            lines.append(f'| {str(dtype)[6:]} | skipped: {reason} | | |')
            continue
        torch.manual_seed(0)
        # The authors' initialisation: what training starts from when no
        # ImageNet weights are loaded.
        model = SecViT(ctx.arch, drop_path_rate=0.1, out_norm=False)
        model.init_weights()
        model.train().to(ctx.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(
            device_type, enabled=dtype == torch.float16)
        losses = []
        for step in range(steps):
            x = ctx.images(2, size, seed=step).to(ctx.device)
            with torch.autocast(device_type, dtype=dtype):
                loss = sum(out.float().square().mean() for out in model(x))
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
        finite = all(torch.isfinite(p).all() for p in model.parameters())
        scale = f'{scaler.get_scale():.0f}' if scaler.is_enabled() else \
            'not used'
        lines.append(f'| {str(dtype)[6:]} | {losses[0]:.4g} | '
                     f'{losses[-1]:.4g} | {scale} |')
        if not (finite and all(map(math.isfinite, losses))):
            raise CheckFailed('\n'.join(lines +
                                        ['non-finite loss or '
                                         'parameters']))
    return lines


@check(
    'amp_clusters',
    'Autocast against float32: stage-0 cluster agreement',
    needs_cuda=True)
def check_amp_clusters(ctx: CheckContext) -> List[str]:
    """Reported, not judged: docs/distributed.md ("Mixed precision")
    explains the figures."""
    model = ctx.model().eval().to(ctx.device)
    x = ctx.images(1, (512, 512)).to(ctx.device)
    lines = []
    for dtype in (torch.float16, torch.bfloat16):
        agreement = cluster_agreement(model, x, dtype)
        lines.append(f'- {str(dtype)[6:]} at 512x512, per block of stage 0: ' +
                     ' '.join(f'{a:.3f}' for a in agreement))
    return lines


MASK_RCNN_CONFIG = """
_base_ = {base!r}
data_root = {data_root!r}
model = dict(backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)))
train_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=-1),
    logger=dict(interval=1))
"""


@check(
    'mask_rcnn_nccl', 'NCCL world size 1: Mask R-CNN demo --amp, '
    'SyncBN, resume, test, inferencer',
    needs_cuda=True)
def check_mask_rcnn_nccl(ctx: CheckContext) -> List[str]:
    data = osp.join(ctx.work_dir, 'data')
    # 8 images, batch 2: 4 iterations per epoch, checkpoints at 2 and 4.
    make_demo_data(data, num_train=8, num_val=2, ade=False)
    config = osp.join(ctx.work_dir, 'mask_rcnn_demo.py')
    with open(config, 'w') as f:
        f.write(
            MASK_RCNN_CONFIG.format(
                base=osp.join(
                    ctx.repo_root,
                    'configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py'),
                data_root=osp.join(data, 'coco/')))
    work = osp.join(ctx.work_dir, 'mask_rcnn')
    train = [
        *distributed_run(free_port()), 'tools/train.py', config, '--launcher',
        'pytorch', '--amp', '--work-dir', work
    ]
    lines = run_python(ctx, train, 'mask_rcnn_train')
    for name in ('iter_2.pth', 'iter_4.pth'):
        if not osp.exists(osp.join(work, name)):
            raise CheckFailed(f'no {name} in {work}')
    resume = [
        *distributed_run(free_port()), 'tools/train.py', config, '--launcher',
        'pytorch', '--amp', '--work-dir', work, '--resume', '--cfg-options',
        'train_cfg.max_epochs=2'
    ]
    lines += run_python(ctx, resume, 'mask_rcnn_resume')
    with open(osp.join(ctx.work_dir, 'mask_rcnn_resume.log')) as f:
        if 'resumed epoch' not in f.read() or \
                not osp.exists(osp.join(work, 'iter_8.pth')):
            raise CheckFailed('--resume did not continue from iter_4.pth '
                              'to iter_8.pth')
    checkpoint = osp.join(work, 'iter_8.pth')
    test = [
        *distributed_run(free_port()), 'tools/test.py', config, checkpoint,
        '--launcher', 'pytorch', '--work-dir',
        osp.join(work, 'test')
    ]
    lines += run_python(ctx, test, 'mask_rcnn_test')
    image = osp.join(data, 'coco/val2017')
    image = osp.join(image, sorted(os.listdir(image))[0])
    demo = [
        'tools/demo/image_demo.py', image, config, '--weights', checkpoint,
        '--device', 'cuda:0', '--out-dir',
        osp.join(work, 'demo')
    ]
    lines += run_python(ctx, demo, 'mask_rcnn_demo')
    drawn = osp.join(work, 'demo', 'vis', osp.basename(image))
    if not osp.exists(drawn):
        raise CheckFailed(f'image_demo.py wrote no {drawn}')
    return [f'- {line}' for line in lines]


def _two_ranks_worker(rank: int, ctx: CheckContext, init_file: str,
                      out_dir: str) -> None:
    # A collective that the other rank never joins fails after the
    # timeout instead of waiting for gloo's default of 30 minutes.
    dist.init_process_group(
        'gloo',
        init_method=f'file://{init_file}',
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=ctx.timeout))
    try:
        _train_two_ranks(rank, ctx, out_dir)
    finally:
        dist.destroy_process_group()


def _train_two_ranks(rank: int, ctx: CheckContext, out_dir: str) -> None:
    """Three DDP steps on this rank's images; its parameters go to
    ``out_dir/rank{rank}.pth``.

    Written against a gloo teardown deadlock (1 of 4 and 1 of about 7 runs in
    two loops, torch 2.13): gloo's worker thread releases a finished
    collective's Python tensors after the caller has moved on, and needs the
    GIL for it, while the last owner of the process group joins that thread
    with the GIL held. So the ranks do not compare their parameters with a last
    collective (the parent compares the files), and DDP, whose reducer owns the
    group too, is gone when this returns, before the group is destroyed (its
    Python handle lets go of the GIL to wait for the thread).
    """
    norm = 'SyncBN' if ctx.cuda else 'BN'
    model = ctx.model(
        norm_cfg=dict(type=norm, requires_grad=True), with_cp=True)
    model = torch.nn.parallel.DistributedDataParallel(model.train().to(
        ctx.device))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    size = (32, 32) if ctx.dry_run else (256, 256)
    for step in range(3):
        # Each rank its own images, as with a distributed sampler.
        x = ctx.images(2, size, seed=10 * step + rank).to(ctx.device)
        loss = sum(out.square().mean() for out in model(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save(
        dict(parameters=flat.cpu(), norm=norm),
        osp.join(out_dir, f'rank{rank}.pth'))


@check(
    'two_ranks_gloo', 'Two ranks on one device over gloo: SyncBN, '
    'with_cp, equal parameters after 3 steps')
def check_two_ranks_gloo(ctx: CheckContext) -> List[str]:
    init_file = osp.join(ctx.work_dir, 'gloo_init')
    out_dir = osp.join(ctx.work_dir, 'two_ranks')
    if osp.exists(init_file):
        os.remove(init_file)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    try:
        spawn_ranks(
            _two_ranks_worker,
            args=(ctx, init_file, out_dir),
            world_size=2,
            timeout=ctx.timeout)
    except TimeoutError as err:
        raise CheckFailed(f'The two ranks did not finish: {err}') from err
    ranks = [
        torch.load(osp.join(out_dir, f'rank{rank}.pth')) for rank in range(2)
    ]
    difference = (ranks[0]['parameters'] -
                  ranks[1]['parameters']).abs().max().item()
    line = (f'Norm layers {ranks[0]["norm"]}'
            f'{"" if ctx.cuda else " (SyncBN needs CUDA)"}, with_cp=True, '
            f'DDP over gloo on {ctx.device}: largest parameter difference '
            f'between the ranks after 3 steps {difference:.1e}')
    if difference != 0:
        raise CheckFailed(line)
    return [line]


@check('upernet_amp', 'UperNet demo, 4 iterations --amp', needs_cuda=True)
def check_upernet_amp(ctx: CheckContext) -> List[str]:
    data = osp.join(ctx.work_dir, 'data_ade')
    make_demo_data(data, num_train=8, num_val=2, coco=False)
    root = osp.join(data, 'ade/ADEChallengeData2016')
    train = [
        'tools/train.py', 'configs/demo/upernet_secvit-s_demo-ade.py', '--amp',
        '--work-dir',
        osp.join(ctx.work_dir, 'upernet'), '--cfg-options',
        'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}'
    ]
    return [f'- {line}' for line in run_python(ctx, train, 'upernet_train')]


# ----------------------------------------------------------------------
# running and reporting


def run_check(item: Check, ctx: CheckContext) -> CheckResult:
    """Run one check; failures and errors become a 'failed' result."""
    start = time.perf_counter()
    try:
        if item.needs_cuda and not ctx.cuda:
            raise CheckSkipped('no CUDA')
        lines, status = item.function(ctx), 'passed'
    except CheckSkipped as err:
        lines, status = [f'skipped: {err}'], 'skipped'
    except CheckFailed as err:
        lines, status = str(err).splitlines(), 'failed'
    except Exception:  # an error of the check is a finding too
        lines = ['```', *traceback.format_exc().splitlines(), '```']
        status = 'failed'
    return CheckResult(item.name, item.title, status, lines,
                       time.perf_counter() - start)


def run_checks(ctx: CheckContext,
               names: Optional[Sequence[str]] = None) -> List[CheckResult]:
    """Run the checks named in ``names`` (all by default), in order."""
    known = [item.name for item in CHECKS]
    unknown = set(names or []) - set(known)
    if unknown:
        raise ConfigValueError(f'Unknown checks {sorted(unknown)}; choose '
                               f'from {known}.')
    os.makedirs(ctx.work_dir, exist_ok=True)
    return [
        run_check(item, ctx) for item in CHECKS
        if names is None or item.name in names
    ]


def render_report(results: Sequence[CheckResult], ctx: CheckContext,
                  command: str) -> str:
    """The markdown report of ``results``."""
    device = torch.cuda.get_device_name() if ctx.cuda else 'CPU'
    mode = 'dry run (tiny arch, tiny inputs)' if ctx.dry_run else \
        'full run'
    lines = [
        '# mmsecvit GPU acceptance check', '', f'- command: `{command}`',
        f'- date: {time.strftime("%Y-%m-%d %H:%M:%S %Z")}',
        f'- device: {ctx.device} ({device}); {mode}',
        f'- total time: {sum(r.seconds for r in results):.0f} s', '',
        '| check | result | time |', '|---|---|---|'
    ]
    lines += [
        f'| {r.title} | {r.status} | {r.seconds:.1f} s |' for r in results
    ]
    for result in results:
        lines += ['', f'## {result.title}: {result.status}', '', *result.lines]
    lines += ['', '## What one GPU cannot check', '']
    lines += [f'- {item}' for item in NOT_CHECKED]
    return '\n'.join(lines) + '\n'
