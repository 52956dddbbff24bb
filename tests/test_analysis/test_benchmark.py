# Copyright (c) mmsecvit contributors. All rights reserved.
"""The benchmark measures, compares and reports (no timing asserts)."""
import functools
import json
import subprocess

import pytest
import torch
from mmdet.models.backbones import SwinTransformer

from mmsecvit.analysis import benchmark
from mmsecvit.analysis.benchmark import (Case, Result, build_cases,
                                         format_table, parse_size)
from mmsecvit.analysis.compile_check import backbone_blocks
from mmsecvit.analysis.flops import count_flops
from mmsecvit.models import SecViT
from mmsecvit.models.layers import short_cluster_attention as sca
from mmsecvit.testing import TEST_ARCH
from mmsecvit.utils.errors import ConfigValueError


def test_build_cases_puts_swin_first_and_adds_training_cases():
    cases = build_cases(['small'], [(224, 224)], train_sizes=[(64, 64)])
    assert cases[0].model == 'swin-t'
    infer = [c for c in cases if c.task == 'infer']
    assert len(infer) == 1 + 2 * 2  # Swin-T, 2 modes x 2 attentions
    train = [c for c in cases if c.task == 'train']
    assert {c.with_cp for c in train} == {False, 'selective', True}
    # Swin-T has no selective checkpointing; SecViT 2 modes x 3 settings.
    swin = [c for c in train if c.model == 'swin-t']
    assert sorted(c.with_cp for c in swin) == [False, True]
    assert len(train) == 2 + 2 * 3
    assert all(c.batch == 2 and c.impl == 'fast' for c in train)


def test_training_cases_can_be_limited_to_some_checkpointing_modes():
    cases = build_cases(['small'], [], modes=['cluster_size'],
                        train_sizes=[(64, 64)],
                        train_with_cp=[False, 'selective'])
    assert [(c.model, c.with_cp) for c in cases] == [
        ('swin-t', False), ('secvit', False), ('secvit', 'selective')]
    with pytest.raises(ValueError, match='Unknown with_cp'):
        build_cases(['small'], [], train_sizes=[(64, 64)],
                    train_with_cp=['some'])


def test_build_cases_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match='Unknown mode'):
        build_cases(['small'], [(224, 224)], modes=['clusters'])


@pytest.mark.parametrize('text, size', [('800x1333', (800, 1333)),
                                        ('224', (224, 224))])
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_parse_size_explains_a_bad_size():
    with pytest.raises(ValueError, match='HxW'):
        parse_size('800by1333')


def test_table_shows_failures_and_ratios_to_the_first_row():
    results = [
        Result(Case(model='swin-t'), times=[2.0, 1.0, 3.0],
               peak_mem_mib=10),
        Result(Case(), times=[4.0], peak_mem_mib=20, max_abs_diff=None),
        Result(Case(impl='reference'), error='out of memory'),
    ]
    table = format_table(results)
    assert '| 2.000 | 1.000-3.000 | 1.00x |' in table
    assert '| 2.00x |' in table
    assert 'failed: out of memory' in table


def test_measuring_process_gets_the_allocator_settings(monkeypatch):
    seen = {}

    def fake_run(cmd, env=None, **kwargs):
        seen.update(env)
        return subprocess.CompletedProcess(
            cmd, 0, stdout='{"times": [1.0], "peak_mem_mib": 1.0, '
            '"max_abs_diff": null}\n', stderr='')

    monkeypatch.setattr(benchmark.subprocess, 'run', fake_run)
    result = benchmark.measure_in_subprocess(
        benchmark.Case(), env=benchmark.KEEP_HEAP_ENV)
    assert result.times == [1.0]
    for name, value in benchmark.KEEP_HEAP_ENV.items():
        assert seen[name] == value
    assert 'PYTHONPATH' in seen


def test_rounds_interleave_the_cases_and_pool_their_runs(monkeypatch):
    order = []

    def fake_measure(case, env=None):
        order.append(case.model)
        time = 1.0 if case.model == 'swin-t' else 2.0 + len(order)
        return Result(case, times=[time], peak_mem_mib=float(len(order)))

    monkeypatch.setattr(benchmark, 'measure_in_subprocess', fake_measure)
    cases = [Case(model='swin-t'), Case()]
    results = benchmark.run_benchmark(
        cases, rounds=3, log=lambda *args: None)
    assert order == ['swin-t', 'secvit'] * 3
    assert results[0].times == [1.0] * 3
    assert results[1].times == [4.0, 6.0, 8.0]
    assert results[1].median == 6.0
    assert results[1].peak_mem_mib == 6.0  # the largest of the rounds


def test_rounds_keep_the_arithmetic_rate_and_the_limit(monkeypatch):
    """The GMACs, the per-round fp32 limit (median) and the first call
    survive pooling, so the rate columns are filled with --rounds too."""
    limits = iter([100.0, 140.0, 120.0])

    def fake_measure(case, env=None):
        return Result(case, times=[2.0], gmacs=50.0,
                      limit_gmacs_per_s=next(limits), first_call_s=3.0)

    monkeypatch.setattr(benchmark, 'measure_in_subprocess', fake_measure)
    result, = benchmark.run_benchmark([Case()], rounds=3,
                                      log=lambda *args: None)
    assert result.gmacs == 50.0
    assert result.limit_gmacs_per_s == 120.0
    assert result.gmacs_per_s == 25.0
    assert result.limit_share == 25.0 / 120.0
    assert result.first_call_s == 3.0
    assert '| 50 | 25 | 120 |' in format_table([result])


def test_rounds_report_each_rounds_ratio_to_the_first_row(
        monkeypatch, tmp_path):
    """With --rounds the table ends with every row's ratio to the first
    row of its group, round by round: paired within each round, so a round
    in which the machine ran slow moves both and not the ratio."""
    swin = iter([1.0, 2.0, 1.0])  # the second round ran at half speed
    secvit = iter([1.2, 2.6, 1.1])

    def fake_measure(case, env=None):
        if case.size == (64, 64):
            return Result(case, error='RuntimeError: boom')
        time = next(swin if case.model == 'swin-t' else secvit)
        return Result(case, times=[time, time])

    monkeypatch.setattr(benchmark, 'measure_in_subprocess', fake_measure)
    cases = [Case(model='swin-t'), Case(), Case(size=(64, 64))]
    out = tmp_path / 'table.md'
    logged = []
    results = benchmark.run_benchmark(
        cases, out_file=str(out), rounds=3, log=logged.append)
    assert results[1].round_medians == [1.2, 2.6, 1.1]
    assert benchmark.round_ratios(results[1], results[0]) == pytest.approx(
        [1.2, 1.3, 1.1])
    ratios = benchmark.format_round_ratios(results)
    row = [line for line in ratios.splitlines() if 'secvit-s' in line]
    assert row == [
        '| infer | 224x224 | 1 | secvit-s num_clusters fast | '
        '1.20, 1.30, 1.10 | 1.20x | 1.10-1.30x |'
    ]
    # The pooled table is unchanged above it; both go to the file and log.
    assert out.read_text() == format_table(results) + '\n' + ratios
    assert logged[-1] == ratios


def test_round_ratios_skip_failed_rounds_and_single_rounds():
    first = Result(Case(model='swin-t'), times=[1.0])
    first.round_medians = [1.0, float('nan'), 2.0]
    row = Result(Case(), times=[1.5])
    row.round_medians = [1.5, 1.0, 3.0]
    assert benchmark.round_ratios(row, first) == [1.5, 1.5]
    # One round: nothing to add to the pooled table.
    single = Result(Case(), times=[1.5])
    single.round_medians = [1.5]
    only = Result(Case(model='swin-t'), times=[1.0])
    only.round_medians = [1.0]
    assert benchmark.format_round_ratios([only, single]) == ''
    assert benchmark.format_report([only, single]) == format_table(
        [only, single])


def test_rounds_must_be_positive():
    with pytest.raises(ValueError, match='rounds'):
        benchmark.run_benchmark([Case()], rounds=0, log=lambda *args: None)


def test_swin_runs_in_onnxruntime():
    pytest.importorskip('onnxruntime')
    result = benchmark.run_case(
        Case(model='swin-t', size=(32, 32), runtime='onnxruntime',
             warmup=0, repeats=1, threads=1))
    assert len(result.times) == 1 and result.error is None


def test_build_cases_adds_onnxruntime_rows_per_size():
    cases = build_cases(['small'], [(224, 224), (512, 512)],
                        modes=['num_clusters'], impls=['fast'],
                        runtime='onnxruntime')
    assert [(c.model, c.size[0], c.runtime) for c in cases] == [
        ('swin-t', 224, 'pytorch'), ('secvit', 224, 'pytorch'),
        ('swin-t', 224, 'onnxruntime'), ('secvit', 224, 'onnxruntime'),
        ('swin-t', 512, 'pytorch'), ('secvit', 512, 'pytorch'),
        ('swin-t', 512, 'onnxruntime'), ('secvit', 512, 'onnxruntime')]
    with pytest.raises(ValueError, match='runtime'):
        build_cases(['small'], [(224, 224)], runtime='tensorrt')


def test_case_rejects_an_unknown_amp_or_task():
    with pytest.raises(ValueError, match='Unknown amp'):
        Case(amp='fp8')
    with pytest.raises(ValueError, match='Unknown task'):
        Case(task='detect')


def test_build_cases_crosses_amp_and_compile_and_adds_detector_cases():
    cases = build_cases(['small'], [(224, 224)],
                        modes=['cluster_size'],
                        impls=['fast'],
                        amps=[None, 'bf16'],
                        compiles=[False, True],
                        det_train_sizes=[(800, 1333)])
    infer = [c for c in cases if c.task == 'infer']
    assert len(infer) == 2 * 4  # Swin-T and SecViT-S, 2 dtypes x 2
    assert {(c.amp, c.compile) for c in infer} == {
        (None, False), (None, True), ('bf16', False), ('bf16', True)}
    det = [c for c in cases if c.task == 'det-train']
    assert sorted(c.model for c in det) == ['secvit'] * 4 + ['swin-t'] * 4
    assert all(c.batch == 2 and c.size == (800, 1333) for c in det)
    assert 'mask-rcnn secvit-s cluster_size fast amp=bf16 compiled' in {
        c.name for c in det}


def test_table_reports_the_rate_and_its_share_of_the_limit():
    result = Result(Case(), times=[0.5], peak_mem_mib=1, gmacs=4.0,
                    limit_gmacs_per_s=80.0)
    assert result.gmacs_per_s == 8.0
    assert result.limit_share == pytest.approx(0.1)
    assert '| 4 | 8 | 80 | 10% |' in format_table([result])


def test_run_case_counts_macs_and_measures_the_limit():
    result = benchmark.run_case(
        Case(arch=TEST_ARCH, size=(32, 48), warmup=1, repeats=1, threads=1,
             limit_size=64))
    expected = count_flops(
        SecViT(arch=TEST_ARCH).eval(), (torch.rand(1, 3, 32, 48), ))
    assert result.gmacs == pytest.approx(expected['total'] / 1e9)
    assert result.limit_gmacs_per_s > 0
    assert 0 < result.limit_share
    assert result.first_call_s > 0


def test_build_cases_adds_sdpa_rows_where_asked_for():
    cases = build_cases(['small'], [(224, 224)], modes=['cluster_size'],
                        impls=['fast', 'sdpa'], train_sizes=[(64, 64)],
                        train_with_cp=['selective'])
    assert [(c.task, c.impl) for c in cases if c.model == 'secvit'] == [
        ('infer', 'fast'), ('infer', 'sdpa'), ('train', 'fast'),
        ('train', 'sdpa')]
    assert 'cluster_size sdpa with_cp=selective' in cases[-1].name
    # Not measured unless asked for.
    default = build_cases(['small'], [(224, 224)], train_sizes=[(64, 64)])
    assert {c.impl for c in default} == {'fast', 'reference'}


@pytest.mark.parametrize('task', ['infer', 'train'])
def test_sdpa_impl_switches_the_short_cluster_kernel_off(task, monkeypatch):
    # TEST_ARCH at 64x64: 16x16 tokens in 4 clusters of 64 at stage 1.
    calls = {}
    kernel = sca.gather_attend_scatter

    def counting(*args, **kwargs):
        calls[impl] = calls.get(impl, 0) + 1
        return kernel(*args, **kwargs)

    monkeypatch.setattr(sca, 'gather_attend_scatter', counting)
    for impl in ('fast', 'sdpa'):
        benchmark.run_case(
            Case(arch=TEST_ARCH, size=(64, 64), impl=impl, task=task,
                 warmup=0, repeats=1, threads=1, count_macs=False))
    assert calls.get('fast', 0) > 0
    assert 'sdpa' not in calls


def test_training_step_counts_three_forwards_and_runs_under_autocast():
    result = benchmark.run_case(
        Case(arch=TEST_ARCH, size=(32, 32), task='train', batch=2,
             amp='bf16', warmup=0, repeats=1, threads=1, limit_size=64))
    forward = count_flops(
        SecViT(arch=TEST_ARCH).eval(), (torch.rand(1, 3, 32, 32), ))
    assert result.gmacs == pytest.approx(3 * 2 * forward['total'] / 1e9)
    assert len(result.times) == 1


def test_cuda_cases_synchronise_and_report_the_cuda_peak(monkeypatch):
    """CUDA behaviour, simulated on CPU: every timed run is bracketed by
    ``torch.cuda.synchronize`` and the peak comes from
    ``max_memory_allocated``."""
    calls, devices = [], set()

    def record(name, value=None):

        def call(device):
            calls.append(name)
            devices.add(device)
            return value

        return call

    cuda = torch.cuda
    monkeypatch.setattr(cuda, 'synchronize', record('sync'))
    monkeypatch.setattr(cuda, 'reset_peak_memory_stats', record('reset'))
    monkeypatch.setattr(cuda, 'memory_allocated', record('base', 2**20))
    monkeypatch.setattr(cuda, 'max_memory_allocated',
                        record('peak', 5 * 2**20))
    # The tensors stay on the CPU; the device checks see CUDA.
    monkeypatch.setattr(benchmark, '_is_cuda', lambda device: True)
    monkeypatch.setattr(torch.nn.Module, 'to', lambda module, device: module)
    monkeypatch.setattr(benchmark.torch, 'rand',
                        functools.partial(_rand_on_cpu, torch.rand))
    result = benchmark.run_case(
        Case(arch=TEST_ARCH, size=(32, 32), warmup=1, repeats=2, threads=1,
             count_macs=False, device='cuda:1'))
    assert calls[:2] == ['reset', 'base'] and calls[-1] == 'peak'
    assert calls.count('sync') == 2 * (1 + 2)
    assert result.peak_mem_mib == 4.0
    # Every CUDA call names the benchmarked device, not the current one.
    assert devices == {torch.device('cuda:1')}


def _rand_on_cpu(rand, *size, device=None, **kwargs):
    return rand(*size, **kwargs)


def test_detector_training_iteration_runs_with_secvit():
    result = benchmark.run_case(
        Case(arch=TEST_ARCH, size=(64, 64), task='det-train', batch=1,
             warmup=0, repeats=1, threads=1))
    assert len(result.times) == 1 and result.gmacs is None
    assert result.peak_mem_mib >= 0


def test_macs_are_counted_after_the_memory_is_measured(monkeypatch):
    """The FLOP counter's trace must not set the peak the memory column
    reports: it runs after the timed runs and the memory reading."""
    calls = []
    peak = benchmark._peak_rss_mib

    def record_peak():
        calls.append('memory')
        return peak()

    def record_macs(model, case):
        calls.append('macs')
        return 1.0

    monkeypatch.setattr(benchmark, '_peak_rss_mib', record_peak)
    monkeypatch.setattr(benchmark, 'case_gmacs', record_macs)
    result = benchmark.run_case(
        Case(arch=TEST_ARCH, size=(32, 32), warmup=0, repeats=1, threads=1,
             limit_size=64))
    assert calls == ['memory', 'memory', 'macs']
    assert result.gmacs == 1.0 and result.limit_gmacs_per_s > 0


@pytest.mark.parametrize('task', ['infer', 'train'])
def test_blocks_are_compiled_on_a_copy_and_macs_counted_eagerly(
        monkeypatch, task):
    compiled = []
    compile_regions = benchmark.compile_regions

    def eager_backend(model, regions, **kwargs):
        # Inductor would take minutes here; 'eager' still goes through
        # TorchDynamo.
        runner = compile_regions(model, regions, **kwargs, backend='eager')
        compiled.append((runner, kwargs, len(regions(model))))
        return runner

    counted = []

    def record_macs(model, case):
        counted.append(model)
        return 1.0

    monkeypatch.setattr(benchmark, 'compile_regions', eager_backend)
    monkeypatch.setattr(benchmark, 'case_gmacs', record_macs)
    case = Case(arch=TEST_ARCH, size=(32, 48), task=task, batch=2,
                compile='blocks', warmup=1, repeats=1, threads=1,
                limit_size=64)
    assert case.name.endswith(' compiled per block')
    result = benchmark.run_case(case)
    assert len(result.times) == 1 and result.first_call_s > 0
    (runner, kwargs, regions), = compiled
    assert kwargs == {'dynamic': True}
    assert regions == sum(TEST_ARCH['depths'])
    # The copy ran compiled; the multiply-adds came from the eager model.
    model, = counted
    assert model is not runner
    assert all(block._compiled_call_impl is None
               for stage in model.layers for block in stage.blocks)
    assert all(block._compiled_call_impl is not None
               for stage in runner.layers for block in stage.blocks)


def test_blocks_of_secvit_and_swin_and_a_model_without_stages():
    assert len(backbone_blocks(SecViT(arch=TEST_ARCH))) == sum(
        TEST_ARCH['depths'])
    assert len(backbone_blocks(SwinTransformer())) == 2 + 2 + 6 + 2
    with pytest.raises(ConfigValueError, match='compile the whole model'):
        backbone_blocks(torch.nn.Conv2d(3, 4, 1))


def test_synchronize_waits_on_cuda_only(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, 'synchronize', synced.append)
    benchmark.synchronize('cpu')
    benchmark.synchronize(torch.device('cpu'))
    assert synced == []
    benchmark.synchronize('cuda')
    benchmark.synchronize('cuda:1')
    assert synced == ['cuda', 'cuda:1']


def test_arch_arguments_of_the_analysis_tools():
    assert benchmark.parse_arch_or_test('test') is TEST_ARCH
    assert benchmark.parse_arch_or_test('s') == 's'
    with pytest.raises(ConfigValueError):
        benchmark.parse_arch_or_test('huge')


def test_alternating_runs_take_turns_in_one_process(monkeypatch):
    """One timed run of each case in turn, after every case's warm-up;
    each run under its own case's attention switch; CPU peak memory not
    split between the cases (n/a)."""
    order = []
    run_once = benchmark._PreparedCase.run_once

    def recording_run_once(self):
        order.append((self.case.impl, sca._switch.enabled))
        return run_once(self)

    monkeypatch.setattr(benchmark._PreparedCase, 'run_once',
                        recording_run_once)
    cases = [
        Case(arch=TEST_ARCH, size=(32, 48), mode='cluster_size', impl=impl,
             warmup=1, repeats=2, threads=1, limit_size=64)
        for impl in ('fast', 'sdpa')
    ]
    results = benchmark.run_cases_alternating(cases)
    # Warm-ups, then the timed passes, every other one in reverse.
    assert order == [('fast', True), ('sdpa', False)] * 2 + [
        ('sdpa', False), ('fast', True)]
    for result in results:
        assert len(result.times) == 2 and result.first_call_s > 0
        assert result.gmacs > 0 and result.limit_gmacs_per_s > 0
        assert result.peak_mem_mib != result.peak_mem_mib  # NaN
    assert '| n/a |' in format_table(results)


def test_alternating_runs_report_a_cuda_peak_per_case(monkeypatch):
    """On CUDA (simulated) each timed run's peak over what was allocated
    before it is the case's peak memory."""
    allocated = iter(range(10**6))
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda device: None)
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats',
                        lambda device: None)
    monkeypatch.setattr(torch.cuda, 'memory_allocated',
                        lambda device: next(allocated) * 2**20)
    peaks = iter([3, 9, 5, 4])  # MiB over the base, run by run

    def max_memory_allocated(device):
        return (next(allocated) + next(peaks)) * 2**20

    monkeypatch.setattr(torch.cuda, 'max_memory_allocated',
                        max_memory_allocated)
    monkeypatch.setattr(benchmark, '_is_cuda', lambda device: True)
    monkeypatch.setattr(torch.nn.Module, 'to', lambda module, device: module)
    monkeypatch.setattr(benchmark.torch, 'rand',
                        functools.partial(_rand_on_cpu, torch.rand))
    cases = [
        Case(arch=TEST_ARCH, size=(32, 32), warmup=0, repeats=2, threads=1,
             count_macs=False, device='cuda', model=model)
        for model in ('secvit', 'swin-t')
    ]
    secvit, swin = benchmark.run_cases_alternating(cases)
    # Runs: secvit 3 (+1 allocation between reading the base and the
    # peak), swin 9, then in reverse swin 5, secvit 4.
    assert secvit.peak_mem_mib == 5 and swin.peak_mem_mib == 10


def test_alternating_runs_need_one_device_and_pytorch():
    with pytest.raises(ConfigValueError, match='one device and thread'):
        benchmark.run_cases_alternating([Case(threads=1), Case(threads=2)])
    with pytest.raises(ConfigValueError, match='PyTorch cases only'):
        benchmark.run_cases_alternating([Case(runtime='onnxruntime')])


def test_alternating_passes_vary_the_order(monkeypatch):
    """No case always runs right after the same other one: every other
    pass goes the other way."""
    order = []

    def fake_prepare(case):
        return benchmark._PreparedCase(
            case, Result(case), torch.nn.Linear(1, 1), torch.device('cpu'),
            lambda: order.append(case.model))

    monkeypatch.setattr(benchmark, '_prepare_case', fake_prepare)
    cases = [Case(model=name, warmup=0, repeats=8, count_macs=False)
             for name in ('a', 'b', 'c')]
    results = benchmark.run_cases_alternating(cases)
    assert ''.join(order) == 'abccba' * 4
    assert [len(r.times) for r in results] == [8, 8, 8]


def test_alternate_groups_the_cases_by_task_and_size(monkeypatch):
    calls = []

    def fake_alternating(cases, env=None):
        calls.append([(c.model, c.size, c.task) for c in cases])
        return [Result(c, times=[1.0 + i]) for i, c in enumerate(cases)]

    monkeypatch.setattr(benchmark, 'measure_alternating_in_subprocess',
                        fake_alternating)
    cases = build_cases(['small'], [(224, 224), (512, 512)],
                        modes=['cluster_size'], impls=['fast'],
                        train_sizes=[(64, 64)], train_with_cp=[False])
    results = benchmark.run_benchmark(cases, rounds=2, alternate=True,
                                      log=lambda *args: None)
    assert calls == [[('swin-t', (224, 224), 'infer'),
                      ('secvit', (224, 224), 'infer')],
                     [('swin-t', (512, 512), 'infer'),
                      ('secvit', (512, 512), 'infer')],
                     [('swin-t', (64, 64), 'train'),
                      ('secvit', (64, 64), 'train')]] * 2
    assert [r.times for r in results] == [[1.0, 1.0], [2.0, 2.0]] * 3
    assert benchmark.alternation_groups(
        [Case(runtime='onnxruntime'), Case(runtime='onnxruntime')]) == [
            [0], [1]]


def test_an_onnxruntime_case_alone_in_its_group_is_measured_alone(
        monkeypatch):
    """The alternating worker measures PyTorch cases only: an ONNX Runtime
    case (its own group) goes to the one-case worker."""
    alone, together = [], []
    monkeypatch.setattr(
        benchmark, 'measure_in_subprocess',
        lambda case, env=None: alone.append(case) or Result(case, times=[1.]))
    monkeypatch.setattr(
        benchmark, 'measure_alternating_in_subprocess',
        lambda cases, env=None: together.append(cases) or
        [Result(c, times=[2.]) for c in cases])
    cases = [Case(), Case(model='swin-t'), Case(runtime='onnxruntime')]
    results = benchmark.run_benchmark(cases, alternate=True,
                                      log=lambda *args: None)
    assert alone == cases[2:] and together == [cases[:2]]
    assert [r.times for r in results] == [[2.], [2.], [1.]]


def test_alternating_worker_takes_a_list_of_cases(monkeypatch):
    seen = {}

    def fake_run(cmd, env=None, **kwargs):
        seen['request'] = cmd[-1]
        return subprocess.CompletedProcess(
            cmd, 0, stdout='[{"times": [1.0], "peak_mem_mib": NaN}, '
            '{"times": [2.0], "peak_mem_mib": NaN}]\n', stderr='')

    monkeypatch.setattr(benchmark.subprocess, 'run', fake_run)
    first, second = benchmark.measure_alternating_in_subprocess(
        [Case(model='swin-t'), Case()])
    assert seen['request'].startswith('[')
    assert first.times == [1.0] and second.times == [2.0]
    assert first.case.model == 'swin-t'

    def failing_run(cmd, env=None, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout='',
                                           stderr='RuntimeError: boom\n')

    monkeypatch.setattr(benchmark.subprocess, 'run', failing_run)
    results = benchmark.measure_alternating_in_subprocess([Case(), Case()])
    assert [r.error for r in results] == ['RuntimeError: boom'] * 2


def test_a_case_failing_in_the_alternating_worker_keeps_its_error(
        monkeypatch):
    """The worker process survives one case's failure; what it sends
    back carries that case's error to the table."""
    sent = [
        benchmark._result_fields(Result(Case(), times=[1.0])),
        benchmark._result_fields(
            Result(Case(), error='RuntimeError: out of memory')),
    ]

    def fake_run(cmd, env=None, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 0, stdout=json.dumps(sent) + '\n', stderr='')

    monkeypatch.setattr(benchmark.subprocess, 'run', fake_run)
    ok, failed = benchmark.measure_alternating_in_subprocess(
        [Case(model='swin-t'), Case()])
    assert ok.error is None and ok.times == [1.0]
    assert failed.error == 'RuntimeError: out of memory'
    assert 'failed: RuntimeError: out of memory' in format_table(
        [ok, failed])


def test_a_failing_alternating_case_leaves_the_turns(monkeypatch):
    """A case that raises (while built, or in a timed run: e.g. out of
    memory) reports the error and leaves the turns; the others go on."""
    order = []

    def fake_prepare(case):
        if case.model == 'broken':
            raise ValueError("Unknown model 'broken'\nmore lines")
        calls = []

        def step():
            calls.append(None)
            if case.model == 'oom' and len(calls) == 2:
                raise RuntimeError('CUDA out of memory. Tried to allocate')
            order.append(case.model)

        return benchmark._PreparedCase(case, Result(case),
                                       torch.nn.Linear(1, 1),
                                       torch.device('cpu'), step)

    monkeypatch.setattr(benchmark, '_prepare_case', fake_prepare)
    cases = [Case(model=name, warmup=1, repeats=3, count_macs=False)
             for name in ('a', 'oom', 'broken', 'b')]
    a, oom, broken, b = benchmark.run_cases_alternating(cases)
    assert broken.error == "ValueError: Unknown model 'broken'"
    assert oom.error == 'RuntimeError: CUDA out of memory. Tried to allocate'
    assert oom.times == []  # its warm-up passed, its first timed run failed
    assert len(a.times) == len(b.times) == 3 and not a.error
    assert ''.join(order) == 'aoomb' + 'ab' + 'ba' + 'ab'
    table = format_table([a, oom, broken, b])
    assert 'failed: RuntimeError: CUDA out of memory' in table
