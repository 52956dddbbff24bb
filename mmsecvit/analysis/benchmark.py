# Copyright (c) mmsecvit contributors. All rights reserved.
"""Latency and peak memory of backbones, each case in a fresh process or
several taking turns in one.

A *case* is one backbone (a SecViT arch in one cluster mode with the fast or
the reference attention, or mmdet's Swin-T) at one input size, measured
either for inference (``no_grad`` forward) or for training (forward and
backward of the sum of the outputs), optionally under autocast (bf16/fp16)
and ``torch.compile``. A ``'det-train'`` case times whole Mask R-CNN
training iterations (loss, backward, optimizer step) with either backbone.
:func:`run_case` measures a case in the current process;
:func:`measure_in_subprocess` runs it in a fresh Python so that the peak
resident memory of one case does not leak into the next.
:func:`run_cases_alternating` (in a fresh Python:
:func:`measure_alternating_in_subprocess`) measures several cases in one
process, one timed run of each in turn, for steadier ratios between them.

Next to each latency the case reports its arithmetic rate: the multiply-adds
of the work (our FLOP counter, :mod:`mmsecvit.analysis.flops`; a training
step counts three forwards, the usual estimate for forward plus backward)
divided by the median time, and the share this is of the machine's own
limit, an fp32 matrix product timed in the same process right after the
case (:func:`matmul_rate`).

Memory is measured as:

* CPU: the peak resident set size of the process (``ru_maxrss``) minus its
  value after the model and the input were built, i.e. the extra memory the
  forward (and backward) needed at its peak.
* GPU: ``torch.cuda.max_memory_allocated`` minus the memory allocated before
  the first forward.
"""
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import (Callable, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import torch

from mmsecvit.analysis.compile_check import (backbone_blocks, compile_regions,
                                             region_recompile_limit)
from mmsecvit.analysis.flops import count_flops
from mmsecvit.deployment.onnx_export import export_onnx
from mmsecvit.models import SecViT, parse_arch
from mmsecvit.models.layers.short_cluster_attention import short_cluster_kernel
from mmsecvit.registry import MODELS
from mmsecvit.testing import (TEST_ARCH, compare_with_reference_attention,
                              randomize_weights, use_reference_attention)
from mmsecvit.utils.errors import ConfigValueError

SECVIT_ARCHS = ('tiny', 'small', 'base', 'large')
MODES = ('num_clusters', 'cluster_size')
#: SecViT's attention: 'fast' (the model as it is), 'sdpa' (the same with
#: every cluster through ``scaled_dot_product_attention``: the short-cluster
#: kernel switched off, to measure what that kernel gains) and 'reference'
#: (the paper's attention written plainly).
IMPLS = ('fast', 'sdpa', 'reference')
#: The impls measured unless others are asked for.
DEFAULT_IMPLS = ('fast', 'reference')
RUNTIMES = ('pytorch', 'onnxruntime')
TASKS = ('infer', 'train', 'det-train')
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# The Mask R-CNN of the training-iteration cases; its backbone is swapped
# for the case's (SecViT arch or mmdet's Swin-T), the rest stays as is.
DETECTOR_CONFIG = 'configs/mask_rcnn/mask-rcnn_secvit-s_fpn_1x_coco.py'
SWIN_T = dict(type='mmdet.SwinTransformer')
SWIN_T_CHANNELS = [96, 192, 384, 768]


@dataclass
class Case:
    """One measurement.

    Args:
        model (str): 'secvit' or 'swin-t' (mmdet's Swin-T).
        size (tuple[int, int]): Input height and width.
        arch (str | dict): SecViT arch; ignored for Swin-T.
        mode (str): SecViT cluster mode.
        impl (str): 'fast', 'sdpa' or 'reference' attention (see
            :data:`IMPLS`).
        task (str): 'infer' (no_grad forward), 'train' (forward and
            backward in train mode) or 'det-train' (one training iteration
            of a Mask R-CNN with this backbone: losses, backward, AdamW
            step).
        batch (int): Images per batch.
        with_cp (bool | str): Activation checkpointing (training only):
            False, True or, for SecViT, 'selective'.
        device (str): 'cpu' or 'cuda'.
        threads (int): CPU threads (``torch.set_num_threads``).
        warmup (int): Untimed runs before the timed ones.
        repeats (int): Timed runs.
        check_diff (bool): For the reference impl, run one more forward
            in which every attention is computed both ways on the same
            inputs and report the largest absolute difference.
        runtime (str): 'pytorch' (eager) or 'onnxruntime': the backbone
            exported to ONNX at the case's size (static shape) and run by
            ONNX Runtime on the CPU with ``threads`` threads (inference
            only).
        amp (str, optional): Autocast dtype, 'bf16' or 'fp16'; None runs
            in fp32.
        compile (bool | str): Run the model through ``torch.compile``
            (default Inductor): True compiles the whole backbone, 'blocks'
            each of its blocks on its own with dynamic shapes (regional
            compilation, see
            :func:`~mmsecvit.analysis.compile_check.backbone_blocks`). The
            first, compiling call is reported apart as ``first_call_s``.
        count_macs (bool): Count the multiply-adds of the work and time an
            fp32 matrix product, for the arithmetic rate and its share of
            the machine's limit (backbone cases only).
        limit_size (int): Side of the square fp32 matrices of that product.
    """
    model: str = 'secvit'
    size: Tuple[int, int] = (224, 224)
    arch: object = 'small'
    mode: str = 'num_clusters'
    impl: str = 'fast'
    task: str = 'infer'
    batch: int = 1
    with_cp: Union[bool, str] = False
    device: str = 'cpu'
    threads: int = 2
    warmup: int = 1
    repeats: int = 3
    check_diff: bool = True
    runtime: str = 'pytorch'
    amp: Optional[str] = None
    compile: Union[bool, str] = False
    count_macs: bool = True
    limit_size: int = 4096

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigValueError(
                f'Unknown task {self.task!r}; use one of {TASKS}.')
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ConfigValueError(f'Unknown amp {self.amp!r}; use None or '
                                   f'one of {tuple(AMP_DTYPES)}.')

    @property
    def measures_rate(self) -> bool:
        """Whether the case counts its multiply-adds and times the fp32
        limit: backbone cases with ``count_macs`` (a detector's FLOPs
        depend on its proposals)."""
        return self.count_macs and self.task != 'det-train'

    @property
    def name(self) -> str:
        if self.model != 'secvit':
            name = self.model
        else:
            arch = self.arch if isinstance(self.arch, str) else 'custom'
            name = f'secvit-{arch[0]} {self.mode} {self.impl}'
        if self.task == 'det-train':
            name = f'mask-rcnn {name}'
        if self.with_cp == 'selective':
            name += ' with_cp=selective'
        elif self.with_cp:
            name += ' with_cp'
        if self.runtime != 'pytorch':
            name += f' {self.runtime}'
        if self.amp:
            name += f' amp={self.amp}'
        if self.compile == 'blocks':
            name += ' compiled per block'
        elif self.compile:
            name += ' compiled'
        return name


@dataclass
class Result:
    """What a case measured; times in seconds, memory in MiB."""
    case: Case
    times: List[float] = field(default_factory=list)
    peak_mem_mib: float = float('nan')
    max_abs_diff: Optional[float] = None
    error: Optional[str] = None
    gmacs: Optional[float] = None
    limit_gmacs_per_s: Optional[float] = None
    first_call_s: Optional[float] = None
    # Per-round values behind the pooled limit and first call (--rounds).
    limit_rounds: List[float] = field(default_factory=list, repr=False)
    first_call_rounds: List[float] = field(default_factory=list, repr=False)
    # The median of each round's timed runs (NaN for a failed round).
    round_medians: List[float] = field(default_factory=list, repr=False)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float('nan')

    @property
    def gmacs_per_s(self) -> Optional[float]:
        """Achieved arithmetic rate: the case's GMACs over its median."""
        if self.gmacs is None or not self.times:
            return None
        return self.gmacs / self.median

    @property
    def limit_share(self) -> Optional[float]:
        """The achieved rate as a share of the measured fp32 limit."""
        rate = self.gmacs_per_s
        if rate is None or not self.limit_gmacs_per_s:
            return None
        return rate / self.limit_gmacs_per_s

    @property
    def spread(self) -> Tuple[float, float]:
        if not self.times:
            return float('nan'), float('nan')
        return min(self.times), max(self.times)


def build_backbone(case: Case) -> torch.nn.Module:
    """The backbone of a case, with weights at a trained network's scale
    (near-uniform attention from the default init would hide differences
    between the fast and the reference path)."""
    if case.model == 'swin-t':
        from mmdet.models.backbones import SwinTransformer

        # mmdet's defaults are Swin-T: 96 channels, depths (2, 2, 6, 2).
        return SwinTransformer(with_cp=case.with_cp)
    if case.model != 'secvit':
        raise ValueError(f"Unknown model {case.model!r}; use 'secvit' or "
                         "'swin-t'.")
    model = SecViT(
        arch=case.arch,
        cluster_mode=case.mode,
        with_cp=case.with_cp,
        drop_path_rate=0.)
    return randomize_weights(model, seed=0)


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is_cuda(device: Union[str, torch.device]) -> bool:
    return torch.device(device).type == 'cuda'


def check_repeats(repeats: int) -> None:
    """Refuse fewer than one timed repetition (a median of nothing) with a
    :class:`ConfigValueError`."""
    if repeats < 1:
        raise ConfigValueError(f'repeats must be at least 1, got {repeats}.')


def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for the work queued on ``device`` (CUDA kernels run
    asynchronously: without it a timer would stop when the work is queued,
    not when it is done); nothing on the CPU. ``device`` is named to CUDA:
    on ``cuda:1`` a plain ``torch.cuda.synchronize()`` would wait for the
    current device (``cuda:0``) instead."""
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def matmul_rate(device: Union[str, torch.device] = 'cpu',
                size: int = 4096,
                repeats: int = 3) -> float:
    """The machine's fp32 arithmetic limit as this process sees it: GMACs
    per second of the fastest of ``repeats`` (size x size) fp32 matrix
    products, a kernel that runs close to the hardware's peak.

    Args:
        device (str | torch.device): Where to multiply.
        size (int): Side of the square matrices.
        repeats (int): Timed products (after one untimed).
    """
    device = torch.device(device)
    a = torch.rand(size, size, device=device)
    b = torch.rand(size, size, device=device)
    torch.mm(a, b)
    best = float('inf')
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return size**3 / best / 1e9


def _compiled(model: torch.nn.Module,
              how: Union[bool, str]) -> torch.nn.Module:
    """The model to run for :attr:`Case.compile`: itself (False), a copy
    with its blocks compiled ('blocks') or ``torch.compile(model)``; in
    every case ``model`` stays eager (the multiply-adds are counted on
    it)."""
    if how == 'blocks':
        return compile_regions(model, backbone_blocks, dynamic=True)
    return torch.compile(model) if how else model


def case_gmacs(model: torch.nn.Module, case: Case) -> float:
    """GMACs of one timed step of a backbone case: the forward of a batch
    (counted on one image, times the batch), three times that for a
    training step."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            macs = count_flops(
                model, (torch.rand(1, 3, *case.size, device=device), ),
                count_attention=True)['total']
    finally:
        model.train(training)
    return macs * case.batch * (3 if case.task == 'train' else 1) / 1e9


def build_detector(case: Case, root: Optional[str] = None) -> torch.nn.Module:
    """The Mask R-CNN of :data:`DETECTOR_CONFIG` with the case's backbone
    (randomly initialised; no pretrained weights are loaded).

    Args:
        case (Case): A 'det-train' case.
        root (str, optional): Directory :data:`DETECTOR_CONFIG` is
            relative to; defaults to the repository holding this package.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    root = root or _repo_root()
    cfg = Config.fromfile(os.path.join(root, DETECTOR_CONFIG))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if case.model == 'swin-t':
        backbone = dict(SWIN_T, with_cp=bool(case.with_cp))
        channels = SWIN_T_CHANNELS
    elif case.model == 'secvit':
        backbone = dict(
            type='mmsecvit.SecViT',
            arch=case.arch,
            cluster_mode=case.mode,
            with_cp=case.with_cp)
        channels = SecViT(arch=case.arch).embed_dims
    else:
        raise ValueError(f"Unknown model {case.model!r}; use 'secvit' or "
                         "'swin-t'.")
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = list(channels)
    return MODELS.build(cfg.model)


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _detector_step(model: torch.nn.Module, case: Case, device: torch.device,
                   autocast):
    """A function running one Mask R-CNN training iteration on a fixed
    synthetic batch (random boxes and masks) of ``case.size`` images."""
    from mmdet.testing import demo_mm_inputs
    h, w = case.size
    packed = demo_mm_inputs(
        batch_size=case.batch,
        image_shapes=[(3, h, w)] * case.batch,
        num_items=[5] * case.batch,
        with_mask=True)
    data = model.data_preprocessor(packed, True)
    data['inputs'] = data['inputs'].to(device)
    data['data_samples'] = [s.to(device) for s in data['data_samples']]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=case.amp == 'fp16')

    def step():
        with autocast():
            losses = model.loss(data['inputs'], data['data_samples'])
            loss, _ = model.parse_losses(losses)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def _autocast(case: Case, device: torch.device):
    if case.amp is None:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=AMP_DTYPES[case.amp])


@dataclass
class _PreparedCase:
    """A case ready to run: its model, input and step, and the switches
    its runs happen under."""
    case: Case
    result: Result
    model: torch.nn.Module
    device: torch.device
    step: Callable[[], object]
    x: Optional[torch.Tensor] = None

    @property
    def train(self) -> bool:
        return self.case.task != 'infer'

    def context(self):
        """What every run of the case happens under: the attention impl
        and, for regional compilation, the raised recompile limit."""
        contexts = ExitStack()
        if self.case.model == 'secvit' and self.case.impl == 'reference':
            contexts.enter_context(use_reference_attention())
        elif self.case.model == 'secvit' and self.case.impl == 'sdpa':
            contexts.enter_context(short_cluster_kernel(False))
        if self.case.compile == 'blocks':
            contexts.enter_context(region_recompile_limit())
        return contexts

    def run_once(self) -> float:
        """Run one step; return its time in seconds."""
        synchronize(self.device)
        start = time.perf_counter()
        self.step()
        synchronize(self.device)
        return time.perf_counter() - start

    def warm_up(self) -> None:
        """The untimed runs; the first one's time is the first call."""
        for i in range(self.case.warmup):
            elapsed = self.run_once()
            if i == 0:
                self.result.first_call_s = elapsed


def _prepare_case(case: Case) -> _PreparedCase:
    """Build the model, the input and the step of a PyTorch case."""
    if case.runtime not in RUNTIMES:
        raise ValueError(f'Unknown runtime {case.runtime!r}; use one of '
                         f'{RUNTIMES}.')
    if case.impl not in IMPLS:
        raise ValueError(f'Unknown impl {case.impl!r}; use one of {IMPLS}.')
    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    device = torch.device(case.device)
    detector = case.task == 'det-train'
    model = (build_detector(case) if detector else build_backbone(case))
    model = model.to(device)
    train = case.task != 'infer'
    model.train(train)
    autocast = _autocast(case, device)
    if detector:
        model.backbone = _compiled(model.backbone, case.compile)
        return _PreparedCase(case, Result(case), model, device,
                             _detector_step(model, case, device, autocast))
    runner = _compiled(model, case.compile)
    x = torch.rand(case.batch, 3, *case.size, device=device)

    def step():
        if train:
            with autocast():
                outs = runner(x)
                loss = sum(out.float().sum() for out in outs)
            loss.backward()
            model.zero_grad(set_to_none=True)
            return None
        with torch.no_grad(), autocast():
            return runner(x)

    return _PreparedCase(case, Result(case), model, device, step, x)


def _finish_case(prepared: _PreparedCase, limit: Optional[float]) -> Result:
    """Add what is measured after the timed runs: the reference impl's
    difference, the multiply-adds and the fp32 limit ``limit``."""
    case, result = prepared.case, prepared.result
    if (case.model == 'secvit' and case.impl == 'reference'
            and case.check_diff and not prepared.train):
        result.max_abs_diff = _attention_diff(prepared.model, prepared.x)
    if case.measures_rate:
        result.gmacs = case_gmacs(prepared.model, case)
        result.limit_gmacs_per_s = limit
    return result


def run_case(case: Case) -> Result:
    """Measure a case in this process."""
    if case.runtime == 'onnxruntime':
        return run_onnxruntime_case(case)
    prepared = _prepare_case(case)
    device, result = prepared.device, prepared.result
    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _peak_rss_mib()
    with prepared.context():
        prepared.warm_up()
        for _ in range(case.repeats):
            result.times.append(prepared.run_once())
    if _is_cuda(device):
        result.peak_mem_mib = (torch.cuda.max_memory_allocated(device) -
                               base) / 2**20
    else:
        result.peak_mem_mib = _peak_rss_mib() - base
    # Counted after the timed runs and the memory: the FLOP counter's trace
    # would otherwise set the process's peak resident memory first.
    limit = (matmul_rate(device, case.limit_size)
             if case.measures_rate else None)
    return _finish_case(prepared, limit)


def run_cases_alternating(cases: Sequence[Case]) -> List[Result]:
    """Measure several cases in this process, one timed run of each in
    turn.

    Every case is built and warmed up first; then the timed runs go round
    the cases (run 1 of each, run 2 of each, ..., every other pass in
    reverse order, so that no case always runs after the same other
    one). Differences between
    processes (where the allocator places the maps, which pages are
    faulted in) and the machine's drift then affect every case alike, so a
    ratio between two cases is steadier than across processes; what one
    case leaves in the caches and the heap is seen by the next, as in a
    real pipeline of several models.

    Peak memory is measured per run on CUDA (the peak of the run over what
    was allocated before it); on the CPU the process's resident peak
    cannot be split between the cases, so it is left out (NaN). A case
    that raises (e.g. runs out of memory) gets the error in its result and
    leaves the turns; the others go on.

    Args:
        cases: PyTorch cases sharing device and threads.

    Returns:
        list[Result]: One per case, in order.
    """
    if not cases:
        return []
    for case in cases:
        if case.runtime != 'pytorch':
            raise ConfigValueError(
                f'Alternating runs measure PyTorch cases only, got runtime '
                f'{case.runtime!r} ({case.name}).')
        if (case.device, case.threads) != (cases[0].device,
                                           cases[0].threads):
            raise ConfigValueError(
                'Alternating runs need one device and thread count for '
                f'all cases; got {cases[0].device}/{cases[0].threads} and '
                f'{case.device}/{case.threads}.')
    results = [Result(case) for case in cases]
    # The cases still running, by index; a case that fails leaves it with
    # the error in its result, and the others go on (as one failing
    # measuring process would not stop the next).
    live: Dict[int, _PreparedCase] = {}
    for index, case in enumerate(cases):
        with _failure_recorded(results[index]):
            live[index] = _prepare_case(case)
            results[index] = live[index].result
    torch.set_num_threads(cases[0].threads)
    cuda = _is_cuda(cases[0].device)

    def run(index: int, action: Callable[[_PreparedCase], None]) -> None:
        p = live[index]
        with _failure_recorded(p.result), p.context():
            action(p)
        if p.result.error:
            del live[index]
            if cuda:
                torch.cuda.empty_cache()

    for index in list(live):
        run(index, _PreparedCase.warm_up)
    for run_index in range(max(case.repeats for case in cases)):
        # Every other pass in reverse, so that no case always follows the
        # same one (and inherits the caches and heap it leaves).
        order = sorted(live, reverse=run_index % 2 == 1)
        for index in order:
            if index in live and run_index < cases[index].repeats:
                run(index, _timed_run)
    needs_limit = [p for p in live.values() if p.case.measures_rate]
    limit = (matmul_rate(cases[0].device,
                         max(p.case.limit_size for p in needs_limit))
             if needs_limit else None)
    for index, p in live.items():
        with _failure_recorded(p.result):
            _finish_case(p, limit)
    return results


def _timed_run(p: _PreparedCase) -> None:
    """One timed run of an alternating case, with its CUDA peak."""
    cuda = _is_cuda(p.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(p.device)
        base = torch.cuda.memory_allocated(p.device)
    p.result.times.append(p.run_once())
    if cuda:
        peak = (torch.cuda.max_memory_allocated(p.device) - base) / 2**20
        if not peak <= p.result.peak_mem_mib:  # NaN at first
            p.result.peak_mem_mib = peak


@contextmanager
def _failure_recorded(result: Result) -> Iterator[None]:
    """Record an exception raised within as ``result.error`` (its type and
    first line, as a failed measuring process reports its last line)
    instead of raising it."""
    try:
        yield
    except Exception as error:  # one case must not end the others
        message = str(error).strip().splitlines()
        result.error = type(error).__name__ + (f': {message[0]}'
                                               if message else '')


def run_onnxruntime_case(case: Case) -> Result:
    """Measure a case with the backbone exported to ONNX (at the case's
    size, batch and a static shape) and run by ONNX Runtime on the CPU.
    Peak memory is not measured (NaN)."""
    import onnxruntime as ort  # optional: requirements/optional.txt
    if case.task != 'infer' or case.device != 'cpu' or case.impl != 'fast':
        raise ValueError('The onnxruntime runtime measures CPU inference of '
                         'the fast attention only.')
    torch.manual_seed(0)
    result = Result(case)
    model = build_backbone(case)
    model.eval()  # not chained: mmdet's Swin returns None from train()
    x = torch.rand(case.batch, 3, *case.size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = case.threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'backbone.onnx')
        export_onnx(model, path, case.size, batch=case.batch, dynamic=False)
        del model
        session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    feed = {'input': x.numpy()}
    for _ in range(case.warmup):
        session.run(None, feed)
    for _ in range(case.repeats):
        start = time.perf_counter()
        session.run(None, feed)
        result.times.append(time.perf_counter() - start)
    # Not measured: the peak resident memory of this process is the
    # export's, which comes first.
    result.peak_mem_mib = float('nan')
    return result


def _attention_diff(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between the reference and the fast
    attention over one forward, both fed the same q, k, v and ranking in
    every block.

    Whole-network outputs are no fair comparison in float32: a rounding
    difference in one block can move a token across a cluster boundary of
    the next block's ranking and change its output by 1e-2 or more, with
    both paths correct (in float64 they agree to 1e-10, see the tests).
    """
    with compare_with_reference_attention() as diffs, torch.no_grad():
        model(x)
    return max(diffs)


# glibc's malloc hands every freed block above its mmap threshold (at most
# 32 MiB by default) back to the kernel, so a forward that allocates large
# maps page-faults them in again on every run and the kernel zeroes each
# page: at 800x1333 that is a sizeable, load-dependent share of the time.
# These settings keep freed memory in the heap for reuse (what jemalloc or
# tcmalloc do by default), so that the timing is the model's own.
KEEP_HEAP_ENV = {
    'MALLOC_MMAP_THRESHOLD_': str(2**32),
    'MALLOC_TRIM_THRESHOLD_': str(2**32),
}


def measure_in_subprocess(case: Case,
                          timeout: float = 3600,
                          env: Optional[Dict[str, str]] = None) -> Result:
    """Measure a case in a fresh Python process (clean peak memory).

    Args:
        case (Case): What to measure.
        timeout (float): Seconds before the process is killed.
        env (dict, optional): Environment variables to set in the process,
            e.g. :data:`KEEP_HEAP_ENV`.
    """
    return _measure_in_subprocess([case], False, timeout, env)[0]


def measure_alternating_in_subprocess(
        cases: Sequence[Case],
        timeout: float = 3600,
        env: Optional[Dict[str, str]] = None) -> List[Result]:
    """:func:`run_cases_alternating` in a fresh Python process; arguments
    as for :func:`measure_in_subprocess`."""
    return _measure_in_subprocess(cases, True, timeout, env)


def _measure_in_subprocess(cases: Sequence[Case], alternating: bool,
                           timeout: float,
                           env: Optional[Dict[str, str]]) -> List[Result]:
    payload = [asdict(case) for case in cases] if alternating \
        else asdict(cases[0])
    cmd = [sys.executable, '-m', 'mmsecvit.analysis.benchmark',
           json.dumps(payload)]
    env = dict(os.environ, **(env or {}))
    root = _repo_root()
    env['PYTHONPATH'] = os.pathsep.join(
        [root] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        error = (proc.stderr.strip().splitlines()[-1]
                 if proc.stderr.strip() else f'exit {proc.returncode}')
        return [Result(case, error=error) for case in cases]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if not alternating:
        data = [data]
    return [
        Result(case, **{name: item.get(name) for name in RESULT_FIELDS})
        for case, item in zip(cases, data)
    ]


# What the measuring process sends back.
RESULT_FIELDS = ('times', 'peak_mem_mib', 'max_abs_diff', 'gmacs',
                 'limit_gmacs_per_s', 'first_call_s', 'error')


def _case_from_dict(data: dict) -> Case:
    data = dict(data, size=tuple(data['size']))
    return Case(**data)


def _result_fields(result: Result) -> dict:
    return {name: getattr(result, name) for name in RESULT_FIELDS}


def format_table(results: Sequence[Result]) -> str:
    """A markdown table of results, grouped by task and size, with each
    latency relative to the first row of its group, the arithmetic rate
    and its share of the fp32 limit measured in the same process."""
    header = ('| task | input | batch | backbone | median (s) | min-max (s) '
              '| rel. to first row | GMACs | GMAC/s | fp32 limit (GMAC/s) '
              '| share of limit | peak mem (MiB) | max abs diff |\n'
              '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n')
    rows = []
    firsts: Dict[tuple, float] = {}
    for r in results:
        c = r.case
        key = (c.task, tuple(c.size), c.batch)
        size = f'{c.size[0]}x{c.size[1]}'
        if r.error:
            error = r.error.replace('|', '/')[:100]
            rows.append(f'| {c.task} | {size} | {c.batch} | {c.name} | '
                        f'failed: {error} |' + ' |' * 8)
            continue
        first = firsts.setdefault(key, r.median)
        low, high = r.spread
        diff = '' if r.max_abs_diff is None else f'{r.max_abs_diff:.1e}'
        rows.append(f'| {c.task} | {size} | {c.batch} | {c.name} | '
                    f'{r.median:.3f} | {low:.3f}-{high:.3f} | '
                    f'{r.median / first:.2f}x | {_rate_columns(r)} | '
                    f'{_memory_column(r)} | {diff} |')
    return header + '\n'.join(rows) + '\n'


def round_ratios(result: Result, first: Result) -> List[float]:
    """Each round's median of ``result`` over that of ``first`` in the
    same round, for the rounds both measured (paired: both saw that
    round's state of the machine)."""
    return [
        mine / theirs
        for mine, theirs in zip(result.round_medians, first.round_medians)
        if not (math.isnan(mine) or math.isnan(theirs) or theirs <= 0)
    ]


def format_round_ratios(results: Sequence[Result]) -> str:
    """A markdown table of each row's ratio to the first row of its group
    (task, size, batch), round by round, with their median and range; empty
    where no row was measured in more than one round.

    The pooled medians of :func:`format_table` hide how much the ratio
    moved between rounds; on a machine whose speed drifts between processes
    that spread, not the pooled ratio, says whether a difference is real.
    """
    firsts: Dict[tuple, Result] = {}
    rows = []
    for r in results:
        c = r.case
        key = (c.task, tuple(c.size), c.batch)
        if r.error:
            continue
        first = firsts.setdefault(key, r)
        ratios = round_ratios(r, first)
        if first is r or len(ratios) < 2:
            continue
        rows.append(f'| {c.task} | {c.size[0]}x{c.size[1]} | {c.batch} | '
                    f'{c.name} | {", ".join(f"{v:.2f}" for v in ratios)} | '
                    f'{statistics.median(ratios):.2f}x | '
                    f'{min(ratios):.2f}-{max(ratios):.2f}x |')
    if not rows:
        return ''
    return ('Ratio to the first row of its group, round by round (each '
            "round's median over the first row's in the same round):\n\n"
            '| task | input | batch | backbone | per round | median '
            '| min-max |\n|---|---|---|---|---|---|---|\n' +
            '\n'.join(rows) + '\n')


def format_report(results: Sequence[Result]) -> str:
    """:func:`format_table`, followed by :func:`format_round_ratios` where
    cases were measured in several rounds."""
    ratios = format_round_ratios(results)
    return format_table(results) + ('\n' + ratios if ratios else '')


def _memory_column(r: Result) -> str:
    """The peak memory, or 'n/a' where it was not measured (CPU cases run
    alternating in one process)."""
    return 'n/a' if math.isnan(r.peak_mem_mib) else f'{r.peak_mem_mib:.0f}'


def _rate_columns(r: Result) -> str:
    """GMACs, GMAC/s, limit and share; blank where not measured."""
    if r.gmacs is None:
        return ' | | | '
    share = r.limit_share
    return (f'{r.gmacs:.3g} | {r.gmacs_per_s:.3g} | '
            f'{r.limit_gmacs_per_s or float("nan"):.0f} | ' +
            ('' if share is None else f'{share:.0%}'))


def plot_results(results: Sequence[Result], path: str) -> None:
    """Bar chart of the median inference latencies per input size."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    sizes = sorted({(r.case.task, tuple(r.case.size), r.case.batch)
                    for r in ok})
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for ax, (task, size, batch) in zip(axes[0], sizes):
        group = [r for r in ok if (r.case.task, tuple(r.case.size),
                                   r.case.batch) == (task, size, batch)]
        names = [r.case.name for r in group]
        medians = [r.median for r in group]
        errors = [[r.median - r.spread[0] for r in group],
                  [r.spread[1] - r.median for r in group]]
        ax.barh(names, medians, xerr=errors, color='tab:blue')
        ax.set_title(f'{task} {size[0]}x{size[1]}, batch {batch}')
        ax.set_xlabel('seconds (median, min-max)')
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_size(text: str) -> Tuple[int, int]:
    """'800x1333' -> (800, 1333); '224' -> (224, 224)."""
    try:
        parts = [int(v) for v in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigValueError(f'Bad input size {text!r}; write HxW, e.g. '
                               '800x1333, or one number for a square.')
    return parts[0], parts[1]


def parse_arch_or_test(text: str) -> Union[str, dict]:
    """An ``--arch`` value of the analysis tools: ``'test'`` is the small
    test arch (:data:`~mmsecvit.testing.TEST_ARCH`), anything else goes
    through :func:`~mmsecvit.models.parse_arch`."""
    return TEST_ARCH if text == 'test' else parse_arch(text)


#: Activation checkpointing modes of the training cases.
WITH_CP_MODES = (False, 'selective', True)


def build_cases(archs: Sequence[object],
                sizes: Sequence[Tuple[int, int]],
                modes: Sequence[str] = MODES,
                impls: Sequence[str] = DEFAULT_IMPLS,
                swin: bool = True,
                train_sizes: Sequence[Tuple[int, int]] = (),
                train_batch: int = 2,
                runtime: str = 'pytorch',
                amps: Sequence[Optional[str]] = (None, ),
                compiles: Sequence[Union[bool, str]] = (False, ),
                det_train_sizes: Sequence[Tuple[int, int]] = (),
                train_with_cp: Sequence[Union[bool, str]] = WITH_CP_MODES,
                **common) -> List[Case]:
    """All cases of a benchmark run, in table order.

    For every size: Swin-T first (the yardstick of the relative column),
    then every SecViT arch in every mode with every attention. For every
    training size: Swin-T without and with activation checkpointing, SecViT
    in every mode without, with selective and with full activation
    checkpointing (the fast attention, and 'sdpa' where asked for). Each
    of these in every autocast dtype of ``amps`` and every ``compiles``
    setting. For every
    detector training size: a Mask R-CNN training iteration with Swin-T
    and with every SecViT arch in every mode.

    Args:
        archs: SecViT archs (names or dicts).
        sizes: Inference input sizes.
        modes: SecViT cluster modes.
        impls: Any of :data:`IMPLS`.
        swin (bool): Include mmdet's Swin-T.
        train_sizes: Input sizes of the training (memory) cases.
        train_batch (int): Batch of the training cases (also of the
            detector's).
        amps: Autocast dtypes (None: fp32, 'bf16', 'fp16').
        compiles: ``torch.compile`` off (False), on (True) and/or per
            block ('blocks'); see :attr:`Case.compile`.
        det_train_sizes: Input sizes of Mask R-CNN training iterations.
        train_with_cp: Activation checkpointing of the training cases:
            any of False, 'selective' (SecViT only) and True.
        runtime (str): 'pytorch', or 'onnxruntime' to add, after the eager
            rows of each size, Swin-T and the SecViT archs in every mode
            run by ONNX Runtime (inference only).
        **common: Further :class:`Case` fields (device, threads, warmup,
            repeats, batch).
    """
    for mode in modes:
        if mode not in MODES:
            raise ConfigValueError(
                f'Unknown mode {mode!r}; use one of {MODES}.')
    for impl in impls:
        if impl not in IMPLS:
            raise ConfigValueError(
                f'Unknown impl {impl!r}; use one of {IMPLS}.')
    if runtime not in RUNTIMES:
        raise ConfigValueError(f'Unknown runtime {runtime!r}; use one of '
                               f'{RUNTIMES}.')
    for with_cp in train_with_cp:
        if with_cp not in WITH_CP_MODES:
            raise ConfigValueError(
                f'Unknown with_cp {with_cp!r}; use any of {WITH_CP_MODES}.')
    cases = []
    for size in sizes:
        if swin:
            cases.append(Case(model='swin-t', size=size, **common))
        for arch in archs:
            for mode in modes:
                for impl in impls:
                    cases.append(
                        Case(size=size, arch=arch, mode=mode, impl=impl,
                             **common))
        if runtime == 'onnxruntime':
            onnx_common = dict(common, runtime='onnxruntime')
            if swin:
                cases.append(Case(model='swin-t', size=size, **onnx_common))
            for arch in archs:
                for mode in modes:
                    cases.append(
                        Case(size=size, arch=arch, mode=mode,
                             **onnx_common))
    train_common = dict(common, batch=train_batch)
    train_impls = ['fast'] + (['sdpa'] if 'sdpa' in impls else [])
    for size in train_sizes:
        for with_cp in train_with_cp:
            if swin and with_cp != 'selective':
                cases.append(Case(model='swin-t', size=size, task='train',
                                  with_cp=with_cp, **train_common))
            for arch in archs:
                for mode in modes:
                    for impl in train_impls:
                        cases.append(
                            Case(size=size, arch=arch, mode=mode,
                                 impl=impl, task='train', with_cp=with_cp,
                                 **train_common))
    for size in det_train_sizes:
        if swin:
            cases.append(
                Case(model='swin-t', size=size, task='det-train',
                     **train_common))
        for arch in archs:
            for mode in modes:
                cases.append(
                    Case(size=size, arch=arch, mode=mode, task='det-train',
                         **train_common))
    # ONNX Runtime rows run the exported fp32 graph: no autocast, no
    # torch.compile.
    return [
        variant for case in cases for variant in (
            [case] if case.runtime != 'pytorch' else [
                replace(case, amp=amp, compile=compiled) for amp in amps
                for compiled in compiles
            ])
    ]


def alternation_groups(cases: Sequence[Case]) -> List[List[int]]:
    """The indices of the cases that :func:`run_benchmark` measures
    together with ``alternate=True``: those of one task, input size, batch,
    device and thread count (the rows a ratio is taken between), in table
    order; ONNX Runtime cases each on their own."""
    groups: Dict[tuple, List[int]] = {}
    for index, case in enumerate(cases):
        key = ((case.task, tuple(case.size), case.batch, case.device,
                case.threads) if case.runtime == 'pytorch' else
               ('alone', index))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def run_benchmark(cases: Sequence[Case],
                  out_file: Optional[str] = None,
                  plot_file: Optional[str] = None,
                  in_subprocess: bool = True,
                  env: Optional[Dict[str, str]] = None,
                  rounds: int = 1,
                  alternate: bool = False,
                  log=print) -> List[Result]:
    """Measure the cases and write the markdown table (and the plot) as
    soon as each result is in.

    With ``rounds > 1`` every case is measured once per round, round after
    round, and its timed runs are pooled: a slow drift of the machine (other
    jobs, frequency changes) then affects every case alike instead of the
    cases measured at a bad moment, which keeps ratios between rows honest.
    The table then ends with each row's ratio to the first row of its
    group round by round (:func:`format_round_ratios`), which shows how
    far that ratio moved between rounds.

    Args:
        cases: What to measure, in table order.
        out_file (str, optional): Markdown table to (re)write.
        plot_file (str, optional): PNG bar chart to write at the end.
        in_subprocess (bool): Measure in fresh processes.
        env (dict, optional): Environment variables for those processes.
        rounds (int): Rounds over all cases. Defaults to 1.
        alternate (bool): Measure the cases of each
            :func:`alternation_groups` group in one process, one timed run
            of each in turn (:func:`run_cases_alternating`; CPU peak memory
            is then not measured). Defaults to False: one process per case.
        log: Progress printer.
    """
    if rounds < 1:
        raise ConfigValueError(f'rounds must be >= 1, got {rounds}.')
    results = [Result(case) for case in cases]
    groups = (alternation_groups(cases) if alternate else
              [[index] for index in range(len(cases))])
    for round_index in range(rounds):
        prefix = f'round {round_index + 1}/{rounds} ' if rounds > 1 else ''
        done = 0
        for group in groups:
            members = [cases[i] for i in group]
            for i in group:
                log(f'[{prefix}{i + 1}/{len(cases)}] {cases[i].task} '
                    f'{cases[i].size} {cases[i].name}' +
                    (' (alternating)' if alternate and len(group) > 1
                     else ''))
            # A group of one (an ONNX Runtime case) has no turns to take.
            if not alternate or len(members) == 1:
                measured = [
                    measure_in_subprocess(members[0], env=env)
                    if in_subprocess else run_case(members[0])
                ]
            elif in_subprocess:
                measured = measure_alternating_in_subprocess(members, env=env)
            else:
                measured = run_cases_alternating(members)
            for i, result in zip(group, measured):
                _pool(results[i], result)
                log(f'    {cases[i].name}: median {result.median:.3f} s, '
                    f'peak {_memory_column(result)} MiB' +
                    (f', error: {result.error}' if result.error else ''))
            done = max(done, max(group) + 1)
            if out_file:
                with open(out_file, 'w') as f:
                    f.write(format_report(results[:done] if round_index == 0
                                          else results))
    ratios = format_round_ratios(results)
    if ratios:
        log(ratios)
    if plot_file:
        plot_results(results, plot_file)
    return results


def _pool(total: Result, measured: Result) -> None:
    """Add one round's measurement of a case to its pooled result.

    Times are pooled, peak memory is the largest of the rounds; the
    multiply-adds are the case's, the fp32 limit and the first call the
    median over the rounds (each round measures its own).
    """
    total.times.extend(measured.times)
    total.round_medians.append(measured.median)
    if measured.gmacs is not None:
        total.gmacs = measured.gmacs
    if measured.limit_gmacs_per_s:
        total.limit_rounds.append(measured.limit_gmacs_per_s)
        total.limit_gmacs_per_s = statistics.median(total.limit_rounds)
    if measured.first_call_s is not None:
        total.first_call_rounds.append(measured.first_call_s)
        total.first_call_s = statistics.median(total.first_call_rounds)
    peaks = [
        peak for peak in (total.peak_mem_mib, measured.peak_mem_mib)
        if not math.isnan(peak)
    ]
    total.peak_mem_mib = max(peaks, default=float('nan'))
    if measured.max_abs_diff is not None:
        total.max_abs_diff = max(total.max_abs_diff or 0.,
                                 measured.max_abs_diff)
    if measured.error:
        total.error = measured.error


if __name__ == '__main__':
    # The worker side of measure_in_subprocess (one case) and of
    # measure_alternating_in_subprocess (a list of cases).
    request = json.loads(sys.argv[1])
    if isinstance(request, list):
        results = run_cases_alternating(
            [_case_from_dict(item) for item in request])
        print(json.dumps([_result_fields(result) for result in results]))
    else:
        print(json.dumps(_result_fields(run_case(_case_from_dict(request)))))
