# Copyright (c) mmsecvit contributors. All rights reserved.
"""Export SecViT backbones, detectors and segmentors to ONNX and check the
result with ONNX Runtime.

The exporter is torch's TorchScript-based one (``torch.onnx.export(...,
dynamo=False)``): tracing records the shape arithmetic of the cluster
lengths as graph operations (sizes are tensors while tracing), and mmcv's
ops carry their ONNX symbolics for it only. The dynamo exporter would need
every shape-dependent branch of mmdet's and mmseg's heads rewritten.

What is exported is the tensor forward of the model (``_forward`` of mmdet's
and mmseg's models: the raw head outputs, before any post-processing) or the
backbone alone. Its input is the batch after the data preprocessor
(normalised, padded), of shape (B, 3, H, W).
"""
import contextlib
import copy
import importlib
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import load_state_dict

from mmsecvit.models import SecViT
from mmsecvit.models.layers import (forced_cluster_orders,
                                    record_cluster_assignments)
from mmsecvit.models.layers.sec_attention import (CLUSTER_MODES,
                                                  resolve_cluster_length,
                                                  sec_attention_modules)
from mmsecvit.utils.checkpoint_fit import (check_checkpoint_fits,
                                           checkpoint_state_dict)
from mmsecvit.utils.errors import (ConfigValueError, MissingFileError,
                                   MMSecViTUserError)
from mmsecvit.utils.fileio import load_checkpoint_file

# LayerNormalization is an ONNX op from opset 17; SDPA's symbolic needs 14.
OPSET = 17
# float32 tolerance of the ONNX Runtime check (as numpy.allclose):
# |onnx - torch| <= ATOL + RTOL * |torch| for every output element.
RTOL = 1e-3
ATOL = 1e-4


class ExportError(MMSecViTUserError, RuntimeError):
    """A model that cannot be exported, or an export that does not run in
    ONNX Runtime; the message names the operator and what to do."""


class TensorForward(nn.Module):
    """The raw head outputs of an mmdet detector or mmseg segmentor, as
    their ``forward(mode='tensor')`` gives them, for a batch of images.

    mmdet's single-stage heads and mmseg's decode heads need no data
    samples in ``_forward``, so none are passed.

    Args:
        model (nn.Module): The detector or segmentor.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model._forward(inputs, None)


def build_export_model(config: Union[str, Config],
                       weights: Optional[str] = None,
                       backbone_only: bool = False,
                       cluster_mode: Optional[str] = None,
                       cfg_options: Optional[dict] = None) -> nn.Module:
    """The model of a config, in eval mode on the CPU, ready for export.

    Args:
        config (str | Config): An mmdet or mmseg config.
        weights (str, optional): Checkpoint of the whole model; without it
            the weights are random (fine to check an export, meaningless
            as a model).
        backbone_only (bool): Export the backbone alone.
        cluster_mode (str, optional): Override the backbone's cluster mode,
            'num_clusters' or 'cluster_size'.
        cfg_options (dict, optional): Further config overrides.

    Returns:
        nn.Module: A module whose forward takes the image batch and returns
        the tensors to export.

    Raises:
        ExportError: If the model cannot be exported (see the message).
    """
    if isinstance(config, str) and not osp.isfile(config):
        raise MissingFileError(f'Config file not found: {config}')
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cluster_mode is not None:
        if cluster_mode not in CLUSTER_MODES:
            raise ConfigValueError(f'Unknown cluster_mode {cluster_mode!r}; '
                                   f'use one of {CLUSTER_MODES}.')
        cfg.model.backbone.cluster_mode = cluster_mode
    # Weights come from ``weights`` or stay random: no ImageNet download.
    cfg.model.backbone.init_cfg = None
    _plain_batch_norm(cfg.model)
    _register_codebase(cfg)
    model = MODELS.build(cfg.model)
    if weights is not None:
        checkpoint = load_checkpoint_file(weights)
        check_checkpoint_fits(model, checkpoint, repr(str(weights)),
                              'evaluate')
        load_state_dict(model, checkpoint_state_dict(checkpoint), strict=True)
    for module in model.modules():
        if isinstance(module, SecViT) and module.crop_batch_padding:
            # Its per-image crops are Python loops over data: a graph
            # would freeze them. An exported batch is one size anyway.
            module.crop_batch_padding = False
    if backbone_only:
        model = model.backbone
    else:
        _check_tensor_forward(model)
        model = TensorForward(model)
    # Not chained: mmdet's Swin returns None from train(). The exporter
    # puts the module back into the mode it found it in, so eval it is.
    model.eval()
    return model


def _register_codebase(cfg: Config) -> None:
    """Register the modules of the config's codebase and enter its
    scope."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ExportError(
            f'The config has default_scope={scope!r}; the export takes mmdet '
            'or mmseg configs (inherit their default_runtime.py, or set '
            "default_scope = 'mmdet' or 'mmseg').")
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    init_default_scope(scope)


def _plain_batch_norm(node) -> None:
    """Make every SyncBN of a model config plain BN: the export runs on the
    CPU in eval mode, where both normalise with the running statistics."""
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
        for value in node.values():
            _plain_batch_norm(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _plain_batch_norm(value)


def _check_tensor_forward(model: nn.Module) -> None:
    """Refuse models whose tensor forward cannot become a correct graph."""
    if getattr(model, 'with_rpn', False) or hasattr(model, 'roi_head'):
        raise ExportError(
            f'{type(model).__name__} cannot be exported whole: its tensor '
            'forward selects proposals with the RPN\'s NMS (mmcv.ops.nms, '
            'the autograd function NMSop, which has no ONNX symbolic in '
            'mmcv 2.x, so tracing would freeze its result) and crops them '
            'with mmcv\'s RoIAlign (whose symbolic writes Squeeze with an '
            '"axes" attribute, invalid from opset 13). Export the backbone '
            'with --backbone-only, or deploy the whole model with mmdeploy, '
            'which replaces these ops (docs/deployment.md).')


def output_names(model: nn.Module, x: torch.Tensor) -> List[str]:
    """Names of the flattened outputs of ``model(x)``: ``out{i}`` for a
    backbone; for head outputs ``output{i}``, with ``_{j}`` per level where
    an output is a list over levels (mmdet's ``cls_scores``, ...)."""
    with torch.no_grad():
        outs = model(x)
    if not isinstance(model, TensorForward):
        return [f'out{i}' for i in range(len(outs))]
    return _names(outs, 'output')


def _names(outs, prefix: str) -> List[str]:
    if isinstance(outs, torch.Tensor):
        return [prefix]
    if len(outs) == 1 and prefix == 'output':
        return _names(outs[0], prefix)
    sep = '' if prefix == 'output' else '_'
    return [
        name for i, out in enumerate(outs)
        for name in _names(out, f'{prefix}{sep}{i}')
    ]


def export_onnx(model: nn.Module,
                out_file: str,
                shape: Tuple[int, int],
                batch: int = 1,
                dynamic: bool = True,
                opset: int = OPSET) -> List[str]:
    """Export ``model`` (from :func:`build_export_model`) to ONNX.

    Args:
        model (nn.Module): The model, in eval mode.
        out_file (str): The ``.onnx`` file to write.
        shape (tuple[int, int]): Height and width of the traced input.
        batch (int): Batch of the traced input.
        dynamic (bool): Make batch, height and width dynamic axes (the
            outputs follow); otherwise the graph takes only ``shape``.
        opset (int): ONNX opset. Defaults to :data:`OPSET`.

    Returns:
        list[str]: The names of the outputs.

    Raises:
        ExportError: Naming the operator that has no ONNX export.
    """
    x = torch.randn(batch, 3, *shape)
    names = output_names(model, x)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        dynamic_axes.update({name: {0: 'batch'} for name in names})
    try:
        with torch.no_grad(), _onnx_log_as_asked():
            torch.onnx.export(
                model, (x, ),
                out_file,
                dynamo=False,
                opset_version=opset,
                input_names=['input'],
                output_names=names,
                dynamic_axes=dynamic_axes)
    except Exception as error:
        raise ExportError(_explain_export_error(error, opset)) from error
    return names


# The modules of torch's TorchScript exporter that hold its logging switch
# (``setup_onnx_logging``): where torch >= 2.7 keeps it, and before.
_TORCHSCRIPT_EXPORTER_MODULES = (
    'torch.onnx._internal.torchscript_exporter.utils', 'torch.onnx.utils')


@contextlib.contextmanager
def _onnx_log_as_asked():
    """Keep the ONNX exporter's log off unless it was switched on.

    torch's ``setup_onnx_logging`` reads ``_C._jit_is_onnx_log_enabled``
    without calling it (torch 2.7 to at least 2.13): the function is truthy,
    so every export switches the log on and leaves it on. A failing export
    then prints its whole TorchScript graph (thousands of lines, "Torch IR
    graph at exception") to stdout before any message. Inside this context
    the exporter's switch is a correct one: the log is on only where it was
    on before (``torch._C._jit_set_onnx_log_enabled(True)``) or for a
    ``verbose`` export, and its state is restored afterwards.
    """
    was_enabled = torch._C._jit_is_onnx_log_enabled()

    @contextlib.contextmanager
    def setup_onnx_logging(verbose: bool):
        torch._C._jit_set_onnx_log_enabled(was_enabled or verbose)
        try:
            yield
        finally:
            torch._C._jit_set_onnx_log_enabled(was_enabled)

    patched = []
    for name in _TORCHSCRIPT_EXPORTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, 'setup_onnx_logging'):
            patched.append((module, module.setup_onnx_logging))
            module.setup_onnx_logging = setup_onnx_logging
    try:
        yield
    finally:
        for module, original in patched:
            module.setup_onnx_logging = original
        torch._C._jit_set_onnx_log_enabled(was_enabled)


def _explain_export_error(error: Exception, opset: int) -> str:
    message = str(error)
    unsupported = re.search(
        r"operator '([\w:.]+)'|export of operator ([\w:.]+)", message)
    if unsupported and 'adaptive' in message:
        return (f'The model cannot be exported at this size: the operator '
                f'{unsupported.group(2)} (e.g. the pyramid pooling of '
                'UperNet/PSPNet) becomes a fixed ONNX pooling only when the '
                'size of its input is known at export time and a multiple '
                'of every output size. Export without --dynamic, at a '
                '--shape where the pooled map qualifies (UperNet: H/32 and '
                'W/32 multiples of 6, e.g. --shape 576 576), or export the '
                'backbone with --backbone-only (docs/deployment.md).')
    if unsupported:
        return (f'The model cannot be exported to ONNX: the operator '
                f'{unsupported.group(1) or unsupported.group(2)} has no ONNX '
                f'export at opset '
                f'{opset}. Replace it in the model (or export only the '
                'part before it, e.g. --backbone-only).')
    python_op = re.search(r"Python operator (\w+)", message)
    if python_op:
        return (f'The model cannot be exported to ONNX: the autograd '
                f'function {python_op.group(1)} has no ONNX symbolic. '
                'Replace it in the model (or export only the part before '
                'it, e.g. --backbone-only).')
    first = message.strip().splitlines()[0] if message.strip() else ''
    return (f'The ONNX export failed ({type(error).__name__}: {first}).')


# How ONNX Runtime names an operator it cannot load or run.
_ORT_OP_PATTERNS = (r'implementation for (\w+)',
                    r'([\w.:]+)\(-?\d+\) is not a registered function/op',
                    r'for operator (\w+)')


def ort_session(path: str, model: Optional[bytes] = None):
    """An ONNX Runtime CPU session of ``path`` (or of ``model``, a
    serialized graph derived from it); an operator that ONNX Runtime cannot
    load raises :class:`ExportError` naming it."""
    import onnxruntime as ort
    try:
        return ort.InferenceSession(
            path if model is None else model,
            providers=['CPUExecutionProvider'])
    except Exception as error:
        message = str(error).strip()
        ops = (re.search(pattern, message) for pattern in _ORT_OP_PATTERNS)
        op = next((found.group(1) for found in ops if found), None)
        what = f'the operator {op}' if op else 'the graph'
        raise ExportError(
            f'ONNX Runtime cannot load {path}: {what} is not supported '
            f'({message.splitlines()[0] if message else type(error)}).'
        ) from error


@dataclass
class Check:
    """One ONNX Runtime check: the input and what it found."""
    batch: int
    size: Tuple[int, int]
    max_abs_diff: float
    passed: bool
    redraws: int = 0

    def __str__(self) -> str:
        verdict = 'ok' if self.passed else 'MISMATCH'
        redraws = f', after {self.redraws} input(s) on near-ties redrawn' \
            if self.redraws else ''
        return (f'batch {self.batch}, {self.size[0]}x{self.size[1]}: max '
                f'abs diff {self.max_abs_diff:.2e} -> {verdict}{redraws}')


def verification_inputs(model: nn.Module, shape: Tuple[int, int],
                        dynamic: bool) -> List[Tuple[int, int, int]]:
    """(batch, H, W) of the checks: the export size; with dynamic axes also
    batch 2 at another size and a size whose token count does not divide
    into the clusters of some SecViT block (a shorter last cluster)."""
    h, w = shape
    cases = [(1, h, w)]
    if not dynamic:
        return cases
    cases.append((2, h + 32, max(w - 32, 32)))
    candidates = ((h + dh, w + dw) for dh in range(4, 64, 4)
                  for dw in range(4, 64, 4))
    cases.append((1, ) +
                 next((size for size in candidates
                       if _leaves_short_cluster(model, size)), (h + 4,
                                                                w + 12)))
    return cases


def _leaves_short_cluster(model: nn.Module, size: Tuple[int, int]) -> bool:
    for backbone in model.modules():
        if not isinstance(backbone, SecViT):
            continue
        for i, stage in enumerate(backbone.layers):
            side = [-(-s // 2**(i + 2)) for s in size]
            tokens = side[0] * side[1]
            for block in stage.blocks:
                attn = block.attn
                length = resolve_cluster_length(tokens, attn.num_clusters,
                                                attn.cluster_mode,
                                                attn.cluster_size)
                if tokens % length:
                    return True
    return False


def near_tie(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether float32 rounding moves a token across a cluster boundary
    for this input: the cluster assignments of every SecViT in ``model``
    differ between a float32 and a float64 run.

    Tokens are ranked and cut into equal chunks, so a rounding-level
    difference between two correct implementations (PyTorch and ONNX
    Runtime) can move a token that sits on a boundary to the next cluster
    and change outputs by far more than the rounding. Inputs where float64
    ranks differently from float32 sit that close to a tie.
    """
    for backbone in model.modules():
        if not isinstance(backbone, SecViT):
            continue
        double = copy.deepcopy(backbone).double()
        with torch.no_grad(), \
                record_cluster_assignments(backbone) as single_records, \
                record_cluster_assignments(double) as double_records:
            backbone(x)
            double(x.double())
        for name, labels in single_records.items():
            for a, b in zip(labels, double_records[name]):
                if not torch.equal(a, b):
                    return True
    return False


@dataclass
class _OrderSession:
    """An ONNX Runtime session of the exported graph that also outputs the
    ranking of every SEC attention (the indices of its ``TopK``), after
    the graph's own outputs."""
    session: object
    modules: List[str]  # SEC attention of each extra output, in order


def cluster_order_session(model: nn.Module,
                          onnx_file: str) -> Optional[_OrderSession]:
    """The graph of ``onnx_file`` with the cluster ranking of each SEC
    attention of ``model`` as an extra output, in ONNX Runtime; None where
    the graph ranks no tokens (no SecViT, or global attention only).

    The ranking is the ``TopK`` node that :func:`sec_order` exports to; the
    exporter names it after the path of the module, from the modules called
    by the exported one (``/backbone/layers.0/blocks.0/attn/TopK`` for
    ``model.backbone.layers.0.blocks.0.attn`` of a
    :class:`TensorForward`).
    """
    import onnx
    attentions = sec_attention_modules(model)
    proto = onnx.load(onnx_file)
    modules = []
    for node in proto.graph.node:
        scope, _, op = node.name.rpartition('/')
        scope = scope.strip('/').replace('/', '.')
        names = [
            name for name in attentions
            if name == scope or name.endswith('.' + scope)
        ]
        if node.op_type == 'TopK' and op == 'TopK' and len(names) == 1:
            name, = names
            proto.graph.output.append(
                onnx.helper.make_tensor_value_info(node.output[1],
                                                   onnx.TensorProto.INT64,
                                                   None))
            modules.append(name)
    if not modules:
        return None
    return _OrderSession(
        ort_session(onnx_file, proto.SerializeToString()), modules)


def verify_onnx(model: nn.Module,
                onnx_file: str,
                cases: Sequence[Tuple[int, int, int]],
                rtol: float = RTOL,
                atol: float = ATOL,
                max_redraws: int = 3,
                seed: int = 0) -> List[Check]:
    """Compare ONNX Runtime's outputs with PyTorch's.

    Every check draws a standard normal input (an image after the data
    preprocessor). Tokens are ranked and cut into equal clusters, so a
    rounding difference between two correct implementations can move a
    token that sits on a near-tie across a cluster boundary and change the
    outputs by far more than the rounding; at detection sizes almost every
    input has such tokens. So PyTorch runs with the rankings ONNX Runtime
    computed (see :func:`cluster_order_session` and
    :func:`~mmsecvit.models.layers.forced_cluster_orders`), and the
    exported graph's outputs must equal, within the tolerance, both
    PyTorch's and those of the graph that outputs the rankings. Where the
    graph ranks no tokens, a mismatch on an input where float32 rounding
    moves a token across a boundary in PyTorch (see :func:`near_tie`) is
    redrawn instead, up to ``max_redraws`` times.

    Args:
        model (nn.Module): The exported module.
        onnx_file (str): Its ONNX file.
        cases: (batch, height, width) of each check.
        rtol, atol (float): Tolerance, as :func:`numpy.allclose`.
        max_redraws (int): Redraws per check before reporting a mismatch.
        seed (int): Seed of the inputs.

    Returns:
        list[Check]: One per case.
    """
    session = ort_session(onnx_file)
    ordered = cluster_order_session(model, onnx_file)
    gen = torch.Generator().manual_seed(seed)
    checks = []
    for batch, h, w in cases:
        redraws = 0
        while True:
            x = torch.randn(batch, 3, h, w, generator=gen)
            diff, passed = _compare(model, session, x, rtol, atol, ordered)
            if (passed or ordered is not None or redraws == max_redraws
                    or not near_tie(model, x)):
                break
            redraws += 1
        checks.append(Check(batch, (h, w), diff, passed, redraws))
    return checks


def _compare(model: nn.Module,
             session,
             x: torch.Tensor,
             rtol: float,
             atol: float,
             ordered: Optional[_OrderSession] = None) -> Tuple[float, bool]:
    """Largest absolute difference between ONNX Runtime's and PyTorch's
    outputs for ``x``, and whether all are within the tolerance; PyTorch
    clusters as ``ordered`` does, if given (whose outputs are compared
    too)."""
    feed = {'input': x.numpy()}
    actual = session.run(None, feed)
    orders: Dict[str, torch.Tensor] = {}
    references = []
    if ordered is not None:
        results = ordered.session.run(None, feed)
        ranked, results = results[len(actual):], results[:len(actual)]
        orders = {
            name: torch.from_numpy(order)
            for name, order in zip(ordered.modules, ranked)
        }
        references.append(results)
    with torch.no_grad(), forced_cluster_orders(model, orders):
        references.append([t.numpy() for t in _flatten(model(x))])
    diff, passed = 0., True
    for expected in references:
        passed &= len(actual) == len(expected)
        for out, ref in zip(actual, expected):
            if out.shape != ref.shape:
                return float('inf'), False
            diff = max(diff, float(np.abs(out - ref).max(initial=0.)))
            passed &= bool(np.allclose(out, ref, rtol=rtol, atol=atol))
    return diff, passed


def _flatten(outs) -> List[torch.Tensor]:
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [t for out in outs for t in _flatten(out)]
