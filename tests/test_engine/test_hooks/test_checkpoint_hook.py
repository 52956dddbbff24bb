# Copyright (c) mmsecvit contributors. All rights reserved.
"""RNG states of :class:`ResumableCheckpointHook` restored after a checkpoint
was loaded onto a GPU, simulated on the CPU."""
import logging
import random

import numpy as np
import pytest
import torch

from mmsecvit.engine.hooks import checkpoint_hook
from mmsecvit.engine.hooks.checkpoint_hook import (get_rng_states,
                                                   set_rng_states)


class _OnCuda:
    """Stands for a CUDA tensor, as ``torch.load(map_location='cuda:0')``
    returns it: only ``.cpu()`` gives the byte tensor back."""

    device = torch.device('cuda', 0)

    def __init__(self, tensor):
        self._tensor = tensor

    def cpu(self):
        return self._tensor


def _check_cpu_byte_tensor(state):
    # What the generators check (in C++) before they accept a state.
    if getattr(state, 'device', None) != torch.device('cpu'):
        raise TypeError('RNG state must be a torch.ByteTensor')


@pytest.fixture
def cuda_devices(monkeypatch):
    """Pretend CUDA with ``count`` visible devices; return the calls to
    ``torch.cuda.set_rng_state`` as ``(device index, state)``."""
    calls = []

    def set_rng_state(state, device='cuda'):
        _check_cpu_byte_tensor(state)
        index = device if isinstance(device, int) else 0
        if index >= torch.cuda.device_count():
            raise IndexError('list index out of range')
        calls.append((index, state))

    def pretend(count):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
        # set_rng_state_all looks the function up in torch.cuda.random.
        monkeypatch.setattr(torch.cuda, 'set_rng_state', set_rng_state)
        monkeypatch.setattr(torch.cuda.random, 'set_rng_state', set_rng_state)
        return calls

    return pretend


@pytest.fixture
def torch_rng_checked(monkeypatch):
    real = torch.set_rng_state

    def set_rng_state(state):
        _check_cpu_byte_tensor(state)
        real(state)

    monkeypatch.setattr(torch, 'set_rng_state', set_rng_state)


def _saved_on_cuda(num_cuda_states):
    states = get_rng_states()
    states['torch'] = _OnCuda(states['torch'])
    states['cuda'] = [
        _OnCuda(torch.full((16, ), index, dtype=torch.uint8))
        for index in range(num_cuda_states)
    ]
    return states


@pytest.fixture
def warnings_logged(monkeypatch):
    messages = []

    def print_log(message, logger=None, level=logging.INFO):
        if level >= logging.WARNING:
            messages.append(message)

    monkeypatch.setattr(checkpoint_hook, 'print_log', print_log)
    return messages


def test_states_loaded_onto_a_gpu_are_restored_per_device(
        cuda_devices, torch_rng_checked, warnings_logged):
    calls = cuda_devices(2)
    states = _saved_on_cuda(2)
    expected = torch.rand(3)  # the draw right after the states were taken
    random.random(), np.random.rand(), torch.rand(5)  # move every RNG on
    set_rng_states(states)
    torch.testing.assert_close(torch.rand(3), expected)
    restored = [(index, state[0].item()) for index, state in calls]
    assert restored == [(0, 0), (1, 1)]
    assert warnings_logged == []


def test_fewer_visible_gpus_restore_those_visible_and_say_so(
        cuda_devices, torch_rng_checked, warnings_logged):
    calls = cuda_devices(1)
    set_rng_states(_saved_on_cuda(4))
    assert [index for index, _ in calls] == [0]
    (message, ) = warnings_logged
    assert 'CUDA RNG states of 4 devices and 1 are visible' in message


def test_cuda_states_without_cuda_are_skipped_with_a_warning(
        monkeypatch, torch_rng_checked, warnings_logged):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    set_rng_states(_saved_on_cuda(2))
    (message, ) = warnings_logged
    assert 'CUDA is not available' in message
