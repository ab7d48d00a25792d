"""Train a Caffe net with Caffe's own solver semantics (solver.cpp, solvers/*.cpp).

`Solver(solver.prototxt)` builds the TRAIN net (and the TEST nets, which share the train net's
blobs by layer name) as live CaffeNet modules, feeds their data layers, and runs Caffe's
Solver::Step loop exactly:

    for each iteration (iter = updates done so far):
        TestAll()                      if test_interval and iter % test_interval == 0
                                       (iter 0 only with test_initialization, the default)
        iter_size x ForwardBackward    gradients accumulate; loss = mean of the passes
        ApplyUpdate:
            rate = GetLearningRate()   (lr_policy.py)
            ClipGradients()            global L2 norm over all learnable diffs (the raw sum)
            per param: Normalize (diff /= iter_size) -> Regularize (L2: diff += wd*decay_mult*w,
                       L1: diff += wd*decay_mult*sign(w)) -> ComputeUpdateValue (below)
            w -= diff
        iter += 1; snapshot every `snapshot` iterations

ComputeUpdateValue, with local_rate = rate * lr_mult (history blobs in Caffe's layout):
    SGD       h = momentum*h + local_rate*g;                     diff = h
    Nesterov  h' = momentum*h + local_rate*g;                    diff = (1+momentum)*h' - momentum*h
    AdaGrad   h += g^2;                                          diff = local_rate*g/(sqrt(h)+delta)
    RMSProp   h = rms_decay*h + (1-rms_decay)*g^2;               diff = local_rate*g/(sqrt(h)+delta)
    AdaDelta  h = m*h + (1-m)*g^2; u = g*sqrt((hu+delta)/(h+delta)); hu = m*hu + (1-m)*u^2;
              diff = local_rate*u                               (history: h then hu)
    Adam      m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;  t = iter+1;
              diff = local_rate*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+delta)   (history: m then v)

This is implemented on tensors, not with torch.optim (whose SGD keeps the lr outside the
momentum buffer, so an lr change rescales the old velocity, which Caffe's does not).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modelport.backends.torch_module import CaffeNet, build_module
from modelport.caffe_rng import CaffeRNG
from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.formats.caffe.prototxt import read_net_text, read_solver_text
from modelport.ir import Layer, Net
from modelport.layers.loss import LOSS_LAYER_TYPES, loss_weights
from modelport.pipeline import attach_weights, net_from_param
from modelport.train import lr_policy
from modelport.train.feeds import DATA_LAYER_TYPES, Feed, make_feed, resolve_against
from modelport.train.param_groups import (
    LearnableParam,
    learnable_params,
    share_weights,
    sync_shared,
)
from modelport.train.reporting import Reporter
from modelport.train.snapshot import (
    AUTO_RESUME,
    SolverState,
    check_snapshot_set,
    feedstate_path,
    incomplete_set_error,
    latest_snapshot,
    read_feedstate,
    read_solverstate,
    read_weights_h5,
    snapshot_filename,
    snapshot_lock,
    write_feedstate,
    write_safetensors,
    write_solverstate,
    write_solverstate_h5,
    write_weights_h5,
)

f32 = np.float32

SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
_LEGACY_TYPES = {caffe_pb2.SolverParameter.SGD: "SGD",
                 caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
                 caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
                 caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
                 caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
                 caffe_pb2.SolverParameter.ADAM: "Adam"}
# Types with two history blobs per param (Caffe's AdaDelta/Adam PreSolve add a second set).
_TWO_HISTORIES = ("AdaDelta", "Adam")


def solver_type(param: caffe_pb2.SolverParameter) -> str:
    """The solver type, with Caffe's upgrade of the legacy `solver_type` enum
    (UpgradeSolverType) and its case-insensitive names."""
    name = param.type
    if param.HasField("solver_type"):
        legacy = _LEGACY_TYPES[param.solver_type]
        if param.HasField("type") and param.type.lower() != legacy.lower():
            raise ConfigError(f"solver: both type '{param.type}' and solver_type {legacy} are "
                              "set. Fix: keep only `type`")
        name = legacy
    for known in SOLVER_TYPES:
        if name.lower() == known.lower():
            return known
    raise ConfigError(f"solver: unknown solver type '{name}'. Fix: use one of "
                      f"{', '.join(SOLVER_TYPES)}")


def check_solver(param: caffe_pb2.SolverParameter, kind: str) -> None:
    """The checks Caffe's solver constructors make (abort there, ConfigError here)."""
    from modelport.formats.caffe.prototxt import check_solver_paths

    check_solver_paths(param)  # a NUL in snapshot_prefix would fail only at the first write
    lr_policy.check_policy(param)
    if param.iter_size < 1:
        raise ConfigError("solver: iter_size must be at least 1")
    if param.average_loss < 1:
        raise ConfigError("solver: average_loss should be non-negative (at least 1)")
    if kind in ("AdaGrad", "RMSProp") and param.momentum != 0:
        raise ConfigError(f"solver: momentum cannot be used with {kind}. Fix: remove momentum")
    if kind == "RMSProp" and not 0 <= param.rms_decay <= 1:
        raise ConfigError("solver: rms_decay must lie in [0, 1]")
    if param.regularization_type not in ("L1", "L2"):
        raise ConfigError(f"solver: unknown regularization_type '{param.regularization_type}'. "
                          "Fix: use \"L2\" or \"L1\"")


@dataclass
class IterationRecord:
    """What one training iteration computed (before its update), for logs and tests."""

    iter: int
    loss: float
    lr: float
    outputs: dict[str, np.ndarray]
    outputs_subiter: list[dict[str, np.ndarray]] = field(default_factory=list)
    clip: tuple[float, float] | None = None  # (l2 norm, scale) when gradients were clipped


@dataclass
class TestRecord:
    """One test-net evaluation: the iteration, the test net's index, its mean outputs and loss."""

    iter: int
    net: int
    outputs: dict[str, np.ndarray]
    loss: float


class PhaseNet:
    """One net of the solver: the IR (with its data layers), its module and data feeds."""

    def __init__(self, ir: Net, feeds: list[tuple[Layer, Feed]], device: torch.device,
                 weights: Mapping[str, Any] | None = None) -> None:
        self.ir = ir
        self.feeds = feeds
        fed = {layer.name for layer, _ in feeds}
        shapes: dict[str, tuple[int, ...]] = {}
        for _layer, feed in feeds:
            shapes.update(feed.shapes())
        layers = []
        for layer in ir.layers:
            if layer.name in fed:
                layers.append(_as_input_layer(layer, shapes))
            elif layer.type in DATA_LAYER_TYPES:
                raise ConfigError(f"layer '{layer.name}' (type {layer.type}): nothing feeds "
                                  "this data layer. Fix: pass a feed for it")
            else:
                layers.append(layer)
        module_net = Net(ir.name, tuple(layers), ir.source, ir.phase, ir.notes)
        self.module: CaffeNet = build_module(module_net, allow_missing_weights=True)
        self.module.to(device)
        for layer in ir.layers:
            if self.module.key_of(layer) is not None and len(layer.param.propagate_down):
                _stop_gradients(layer, self.module.layer_module(layer))
        self.device = device
        self.loss_weights: list[tuple[str, float]] = []
        self.top_weight: dict[str, float] = {}
        for layer in ir.layers:
            if layer.name in fed:
                continue
            for top, w in zip(layer.tops, loss_weights(layer)):
                if w:
                    self.loss_weights.append((top, w))
                self.top_weight[top] = self.top_weight.get(top, 0.0) + w
        self.outputs = list(module_net.output_names())

    def next_inputs(self) -> dict[str, torch.Tensor]:
        blobs: dict[str, torch.Tensor] = {}
        for _layer, feed in self.feeds:
            for name, t in feed.next_batch().items():
                blobs[name] = t.to(self.device, non_blocking=True)
        return blobs

    def forward(self, inputs: Mapping[str, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass: (objective = sum of loss_weight * top in layer order, blobs)."""
        feed = dict(inputs) if inputs is not None else self.next_inputs()
        # mypy reads **feed against the bool keyword of forward_blobs; every value is a tensor
        blobs = self.module.forward_blobs(**feed)  # type: ignore[arg-type]
        return self.objective(blobs), blobs

    def objective(self, blobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total: torch.Tensor | None = None
        for top, w in self.loss_weights:
            term = blobs[top].sum() * w if blobs[top].dim() else blobs[top] * w
            total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=self.device)
        return total

    def output_values(self, blobs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {n: blobs[n].detach().to("cpu").float().numpy().copy() for n in self.outputs}


def _stop_gradients(layer: Layer, module: torch.nn.Module) -> None:
    """Caffe's `propagate_down: false` for a bottom: no gradient flows into it from this
    layer (the bottom is detached on its way in)."""
    flags = list(layer.param.propagate_down)
    if len(flags) != len(layer.bottoms):
        raise ConfigError(f"layer '{layer.name}' (type {layer.type}): propagate_down has "
                          f"{len(flags)} values for {len(layer.bottoms)} bottoms. Fix: give "
                          "one per bottom")
    if all(flags):
        return

    def detach(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a if keep or not isinstance(a, torch.Tensor) else a.detach()
                     for a, keep in zip(args, flags))

    module.register_forward_pre_hook(detach)


def _as_input_layer(layer: Layer, shapes: Mapping[str, tuple[int, ...]]) -> Layer:
    lp = caffe_pb2.LayerParameter(name=layer.name, type="Input")
    lp.top.extend(layer.tops)
    for top in layer.tops:
        lp.input_param.shape.add().dim.extend(shapes[top])
    return Layer(layer.name, "Input", (), tuple(layer.tops), lp)


def _read_weights(path: str) -> list[Any]:
    """A .caffemodel, or a .caffemodel.h5 (Caffe picks the reader by the .h5 suffix)."""
    if path.endswith(".h5"):
        return read_weights_h5(path)
    return read_caffemodel(path)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device '{name}'. Fix: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}': CUDA is not available in this PyTorch build or "
                          "machine. Fix: use --device cpu")
    return device


def _as_caffe_saves_it(net: Net) -> Net:
    """The net as Caffe's Net::ToProto writes it after setup: LossLayer::LayerSetUp adds
    `loss_weight: 1` to a loss layer that gives none (the writer adds BatchNorm's lr_mult 0
    params and the Split layers)."""
    layers = []
    for layer in net.layers:
        if layer.type in LOSS_LAYER_TYPES and not layer.param.loss_weight:
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(layer.param)
            lp.loss_weight.append(1.0)
            layer = Layer(layer.name, layer.type, layer.bottoms, layer.tops, lp, layer.blobs)
        layers.append(layer)
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)


def _net_state(phase: int, net_param: caffe_pb2.NetParameter,
               extra: caffe_pb2.NetState | None) -> caffe_pb2.NetState:
    """Caffe's solver NetState: the phase, merged with the net's own `state`, then with the
    solver's train_state / test_state (protobuf MergeFrom: scalars replace, stages append)."""
    state = caffe_pb2.NetState(phase=phase)  # type: ignore[arg-type]
    state.MergeFrom(net_param.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def _resolve_net_paths(param: caffe_pb2.NetParameter, resolve: Callable[[str], str]) -> None:
    """Make the file paths layers read at setup absolute (Caffe opens them relative to its
    working directory). Data sources are resolved by their feeds."""
    for lp in param.layer:
        if lp.type == "InfogainLoss" and lp.infogain_loss_param.source:
            lp.infogain_loss_param.source = resolve(lp.infogain_loss_param.source)


class Solver:
    """A Caffe solver (SolverParameter) running on PyTorch.

    Args:
        solver: path to a solver.prototxt, or a SolverParameter.
        workdir: the directory Caffe would run in (relative paths in the solver, the nets and
            the data lists are resolved against it; default: the current directory, falling
            back to the solver file's directory for files not found there).
        weights: a .caffemodel to initialise from (caffe train --weights); comma-separated
            paths are applied in order. As caffe.cpp does, it replaces the solver's own
            `weights` entries (solver_param.clear_weights(), then add_weights(FLAGS_weights)).
        resuming: True when the run continues a snapshot (caffe train -snapshot): caffe.cpp
            clears the solver's `weights` entries then, so they are not read.
        device: torch device ("cpu", "cuda", ...). None (default): the solver's solver_mode,
            as Caffe does: GPU trains on cuda:device_id when torch has CUDA, else on the CPU
            with one warning line in the log; CPU trains on the CPU.
        max_iter: overrides the solver's max_iter.
        feeds: {data layer name: Feed} to feed data layers yourself (train net).
        reporter: receives log lines / metrics (default: log only).
        keep_records: how many IterationRecords (`records`) to keep in memory.
        rng: "torch" (default: Dropout, crops, mirrors, shuffles and fillers from torch/numpy
            seeded by random_seed) or "caffe": every random draw replays Caffe's own streams
            in Caffe's order (modelport.train.caffe_replay), so a Caffe CPU run with the same
            random_seed is reproduced step for step.
    """

    def __init__(self, solver: str | os.PathLike[str] | caffe_pb2.SolverParameter, *,
                 workdir: str | os.PathLike[str] | None = None,
                 weights: str | os.PathLike[str] | None = None, device: str | None = None,
                 max_iter: int | None = None, feeds: Mapping[str, Feed] | None = None,
                 test_feeds: Mapping[str, Feed] | None = None,
                 reporter: Reporter | None = None, rank: int = 0, world: int = 1,
                 keep_records: int = 10000, rng: str = "torch", resuming: bool = False) -> None:
        if isinstance(solver, caffe_pb2.SolverParameter):
            self.param = caffe_pb2.SolverParameter()
            self.param.CopyFrom(solver)
            self.solver_path: str | None = None
            solver_dir = None
        else:
            self.solver_path = os.fspath(solver)
            self.param = read_solver_text(self.solver_path)
            solver_dir = os.path.dirname(os.path.abspath(self.solver_path))
        if max_iter is not None:
            self.param.max_iter = int(max_iter)
        self.workdir = os.path.abspath(os.fspath(workdir) if workdir is not None
                                       else os.getcwd())
        if not os.path.isdir(self.workdir):
            raise ConfigError(f"working directory '{self.workdir}' is not an existing folder. "
                              "Fix: give --workdir an existing folder (Caffe's cwd)")
        self.resolve = resolve_against(self.workdir, solver_dir)
        self.type = solver_type(self.param)
        check_solver(self.param, self.type)
        self.rank, self.world = rank, world
        self.reporter = reporter or Reporter()
        if device is None:
            device = "cpu"
            if self.param.solver_mode == caffe_pb2.SolverParameter.GPU:
                if torch.cuda.is_available():
                    device = f"cuda:{self.param.device_id}"
                elif rank == 0:
                    self.reporter.message(
                        "solver_mode: GPU (device_id %d) asks for a GPU, but CUDA is not "
                        "available to this PyTorch; training on the CPU",
                        self.param.device_id, level=logging.WARNING)
        self.device = _device(device)
        seed = int(self.param.random_seed)
        if seed >= 0:
            torch.manual_seed(seed)
        self.seed = seed if seed >= 0 else None
        if rng not in ("torch", "caffe"):
            raise ConfigError(f"rng must be 'torch' or 'caffe', got {rng!r}. Fix: pass "
                              "rng=\"caffe\" to replay Caffe's random streams")
        self.caffe_rng: CaffeRNG | None = None
        if rng == "caffe":
            from modelport.train.caffe_replay import check_replayable

            # Solver::Init: Caffe::set_random_seed(random_seed + solver_rank)
            self.caffe_rng = check_replayable(seed + rank, world)

        self._weights_cache: dict[str, Any] = {}  # each weights file read once for all nets
        self._resuming = resuming
        (train_param, train_state), test_params = self._net_params()
        self.net = self._build(train_param, caffe_pb2.TRAIN, feeds, weights, rank, world,
                               train_state)
        self.params: list[LearnableParam] = learnable_params(self.net.module)
        self.test_nets: list[PhaseNet] = []
        self._shared: list[list[str]] = []
        for i, (tp, state) in enumerate(test_params):
            tn = self._build(tp, caffe_pb2.TEST, test_feeds if i == 0 else None, weights,
                             0, 1, state)
            self._shared.append(share_weights(self.net.module, tn.module))
            self.test_nets.append(tn)
        self._weights_cache.clear()
        self.iter = 0
        self.current_step = 0
        n_hist = len(self.params) * (2 if self.type in _TWO_HISTORIES else 1)
        self.history: list[torch.Tensor] = [
            torch.zeros_like(self.params[j % len(self.params)].tensor.detach())
            for j in range(n_hist)]
        self.records: list[IterationRecord] = []  # the last `keep_records` iterations
        self.keep_records = keep_records
        self.tests: list[TestRecord] = []
        self._losses: list[float] = []
        self.smoothed_loss = 0.0
        self.ddp: Any = None  # set by modelport.train.distributed
        self.reporter.set_columns(self.net.outputs + [o for t in self.test_nets
                                                      for o in t.outputs])
        self.snapshots: list[str] = []
        self.stop_requested = False

    # -- construction ---------------------------------------------------------------------
    def _read_net_file(self, path: str) -> caffe_pb2.NetParameter:
        parsed = read_net_text(self.resolve(path))
        if parsed.unknown_field_error:
            raise FormatError(parsed.unknown_field_error)
        msg = parsed.message
        assert isinstance(msg, caffe_pb2.NetParameter)
        return msg

    def _net_params(self) -> tuple[tuple[caffe_pb2.NetParameter, caffe_pb2.NetState],
                                   list[tuple[caffe_pb2.NetParameter, caffe_pb2.NetState]]]:
        """Caffe's Solver::InitTrainNet / InitTestNets: which net definitions, which states."""
        p = self.param
        sources = [p.HasField("train_net_param"), p.HasField("train_net"),
                   p.HasField("net_param"), p.HasField("net")]
        if sum(sources) != 1:
            raise ConfigError(
                "solver: give exactly one of train_net_param, train_net, net_param and net "
                f"(found {sum(sources)})")
        if p.HasField("train_net_param"):
            train = p.train_net_param
        elif p.HasField("train_net"):
            train = self._read_net_file(p.train_net)
        elif p.HasField("net_param"):
            train = p.net_param
        else:
            train = self._read_net_file(p.net)
        train_state = _net_state(caffe_pb2.TRAIN, train,
                                 p.train_state if p.HasField("train_state") else None)
        specific: list[caffe_pb2.NetParameter] = list(p.test_net_param)
        specific += [self._read_net_file(f) for f in p.test_net]
        generic: caffe_pb2.NetParameter | None = None
        if p.HasField("net_param"):
            generic = p.net_param
        elif p.HasField("net"):
            generic = train if not p.HasField("train_net") else self._read_net_file(p.net)
        n_iter = len(p.test_iter)
        if generic is None and n_iter != len(specific):
            raise ConfigError(f"solver: {len(specific)} test nets but {n_iter} test_iter "
                              "values. Fix: give test_iter once per test net")
        if n_iter < len(specific):
            raise ConfigError("solver: test_iter must be specified for each test network")
        instances = specific + ([generic] * (n_iter - len(specific)) if generic is not None
                                else [])
        if p.test_state and len(p.test_state) != len(instances):
            raise ConfigError("solver: test_state must be unspecified or given once per test "
                              f"net ({len(instances)})")
        if instances and p.test_interval <= 0:
            raise ConfigError("solver: test nets need test_interval > 0")
        tests = []
        for i, np_ in enumerate(instances):
            extra = p.test_state[i] if p.test_state else None
            tests.append((np_, _net_state(caffe_pb2.TEST, np_, extra)))
        return (train, train_state), tests

    def _build(self, param: caffe_pb2.NetParameter, phase: int,
               feeds: Mapping[str, Feed] | None, weights: str | os.PathLike[str] | None,
               rank: int, world: int, state: caffe_pb2.NetState | None = None) -> PhaseNet:
        if state is None:
            state = _net_state(phase, param,
                               self.param.train_state if self.param.HasField("train_state")
                               else None)
        work = caffe_pb2.NetParameter()
        work.CopyFrom(param)
        _resolve_net_paths(work, self.resolve)
        ir = net_from_param(work, work.name or "net", state.phase, state.level, state.stage)
        # Caffe 1.0 (caffe.cpp train): -snapshot clears the solver's own `weights` entries,
        # -weights replaces them; otherwise they are applied at net setup. Each entry is a
        # comma-separated list applied in order.
        files: list[str] = []
        if weights is not None:
            files = [self._user_path(w.strip()) for w in os.fspath(weights).split(",")
                     if w.strip()]
        elif not self._resuming:
            files = [self.resolve(w.strip()) for entry in self.param.weights
                     for w in entry.split(",") if w.strip()]
        for path in files:
            if path not in self._weights_cache:
                self._weights_cache[path] = _read_weights(path)
            ir = attach_weights(ir, self._weights_cache[path])
        layer_feeds: list[tuple[Layer, Feed]] = []
        given = dict(feeds or {})
        for layer in ir.layers:
            if layer.name in given:
                layer_feeds.append((layer, given.pop(layer.name)))
            elif layer.type in DATA_LAYER_TYPES and layer.type not in ("Input",):
                layer_feeds.append((layer, make_feed(layer, self.resolve, phase, rank, world,
                                                     self.seed)))
        if given:
            raise ConfigError(f"feeds given for {', '.join(sorted(given))}, which are not data "
                              "layers of the net")
        net = PhaseNet(ir, layer_feeds, self.device)
        if self.caffe_rng is not None:
            from modelport.train.caffe_replay import init_net

            init_net(net, self.caffe_rng, state.phase)
        return net

    def _user_path(self, path: str) -> str:
        """A path given by the user (--weights, --resume): as given if it exists, else
        resolved like the solver's own paths."""
        return path if os.path.exists(path) else self.resolve(path)

    # -- learning rate --------------------------------------------------------------------
    def learning_rate(self) -> float:
        """The base rate of the next update (does not advance multistep bookkeeping)."""
        return lr_policy.learning_rate(self.param, self.iter, self.current_step)[0]

    # -- one iteration --------------------------------------------------------------------
    def _clear_diffs(self) -> None:
        for p in self.params:
            p.tensor.grad = None

    def _forward_backward(self) -> tuple[float, dict[str, np.ndarray]]:
        inputs = self.net.next_inputs()
        ddp = self.ddp
        blobs: dict[str, torch.Tensor]
        if ddp is not None:
            objective, blobs = ddp(inputs)
        else:
            objective, blobs = self.net.forward(inputs)
        if objective.requires_grad:
            objective.backward()
        return float(f32(objective.detach().item())), self.net.output_values(blobs)

    def step(self, iters: int) -> None:
        """Caffe's Solver::Step(iters)."""
        start_iter = self.iter
        stop_iter = self.iter + iters
        self._losses = []
        self.smoothed_loss = 0.0
        display = self.param.display
        timer = time.perf_counter()
        last_display = self.iter
        while self.iter < stop_iter:
            self._clear_diffs()
            if (self.param.test_interval and self.iter % self.param.test_interval == 0
                    and (self.iter > 0 or self.param.test_initialization)):
                if self.rank == 0:
                    self.test_all()
            show = bool(display) and self.iter % display == 0
            loss = f32(0.0)
            subs: list[dict[str, np.ndarray]] = []
            iter_size = self.param.iter_size
            for i in range(iter_size):
                sync = self.ddp is None or i == iter_size - 1
                if sync:
                    pass_loss, outs = self._forward_backward()
                else:
                    with self.ddp.no_sync():
                        pass_loss, outs = self._forward_backward()
                loss = f32(loss + f32(pass_loss))
                subs.append(outs)
            loss = f32(loss / f32(iter_size))
            self._update_smoothed(float(loss), start_iter)
            outputs = subs[0] if len(subs) == 1 else {
                k: np.mean([s[k] for s in subs], axis=0) for k in subs[0]}
            before = self.current_step
            rate, self.current_step = lr_policy.learning_rate(self.param, self.iter,
                                                              self.current_step)
            advanced = (self.current_step if self.param.lr_policy == "multistep"
                        and self.current_step != before else None)
            record = IterationRecord(self.iter, float(loss), rate, outputs,
                                     subs if len(subs) > 1 else [])
            self.records.append(record)
            if len(self.records) > self.keep_records:
                del self.records[: len(self.records) - self.keep_records]
            if self.rank == 0:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - last_display) / lapse if show and lapse else None
                self.reporter.iteration(
                    self.iter, float(loss), self.smoothed_loss, rate,
                    [(n, float(v.reshape(-1)[k]), self.net.top_weight.get(n, 0.0))
                     for n, v in subs[-1].items() for k in range(v.size)],
                    show, per_s, lapse if show else None, display or 1,
                    multistep_step=advanced)
                if show:
                    timer = time.perf_counter()
                    last_display = self.iter
            self._apply_update(rate, record)
            self.iter += 1
            if self.param.snapshot and self.iter % self.param.snapshot == 0 and self.rank == 0:
                self.snapshot()
            if self.stop_requested:
                break

    def _update_smoothed(self, loss: float, start_iter: int) -> None:
        """Caffe's Solver::UpdateSmoothedLoss (mean of the last average_loss losses)."""
        n = self.param.average_loss
        if len(self._losses) < n:
            self._losses.append(loss)
            size = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % n
            self.smoothed_loss += (loss - self._losses[idx]) / n
            self._losses[idx] = loss

    # -- ApplyUpdate ----------------------------------------------------------------------
    @torch.no_grad()
    def _apply_update(self, rate: float, record: IterationRecord | None = None) -> None:
        p = self.param
        diffs: list[torch.Tensor] = []
        for lp in self.params:
            g = lp.tensor.grad if lp.trainable else None
            diffs.append(g if g is not None else torch.zeros_like(lp.tensor))
        # ClipGradients: on the raw accumulated sum, over every learnable param.
        clip = f32(p.clip_gradients)
        if clip >= 0:
            sumsq = f32(0.0)
            for d in diffs:
                sumsq = f32(sumsq + f32((d * d).sum().item()))
            l2 = f32(math.sqrt(float(sumsq)))
            if l2 > clip:
                scale = f32(clip / l2)
                self.reporter.message(
                    "Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale "
                    "factor %s", f"{float(l2):.6g}", f"{float(clip):.6g}", f"{float(scale):.6g}")
                for d in diffs:
                    d.mul_(float(scale))
                if record is not None:
                    record.clip = (float(l2), float(scale))
        norm = f32(1.0) / f32(p.iter_size)
        wd = f32(p.weight_decay)
        l1 = p.regularization_type == "L1"
        for j, lp in enumerate(self.params):
            d = diffs[j]
            w = lp.tensor.detach()
            if p.iter_size != 1:
                d.mul_(float(norm))
            local_decay = f32(wd * f32(lp.decay_mult))
            if local_decay:
                d.add_(torch.sign(w) if l1 else w, alpha=float(local_decay))
            local_rate = float(f32(f32(rate) * f32(lp.lr_mult)))
            update = self._compute_update(j, d, local_rate)
            w.sub_(update)
            lp.tensor.grad = None

    def _compute_update(self, j: int, g: torch.Tensor, local_rate: float) -> torch.Tensor:
        p = self.param
        kind = self.type
        h = self.history[j]
        momentum = float(f32(p.momentum))
        delta = float(f32(p.delta))
        if kind == "SGD":
            h.mul_(momentum).add_(g, alpha=local_rate)
            return h
        if kind == "Nesterov":
            previous = h.clone()
            h.mul_(momentum).add_(g, alpha=local_rate)
            return previous.mul_(-momentum).add_(h, alpha=float(f32(1.0) + f32(p.momentum)))
        if kind == "AdaGrad":
            h.add_(g * g)
            return (g / (torch.sqrt(h) + delta)).mul_(local_rate)
        if kind == "RMSProp":
            decay = float(f32(p.rms_decay))
            h.mul_(decay).add_(g * g, alpha=float(f32(1.0) - f32(p.rms_decay)))
            return (g / (torch.sqrt(h) + delta)).mul_(local_rate)
        n = len(self.params)
        one_minus = float(f32(1.0) - f32(p.momentum))
        if kind == "AdaDelta":
            hu = self.history[n + j]
            h.mul_(momentum).add_(g * g, alpha=one_minus)
            ratio = torch.sqrt((hu + delta) / (h + delta))
            u = g * ratio
            hu.mul_(momentum).add_(u * u, alpha=one_minus)
            return u.mul_(local_rate)
        if kind == "Adam":
            v = self.history[n + j]
            b1, b2 = float(f32(p.momentum)), float(f32(p.momentum2))
            t = self.iter + 1
            correction = float(f32(math.sqrt(1.0 - math.pow(b2, t)) / (1.0 - math.pow(b1, t))))
            h.mul_(b1).add_(g, alpha=one_minus)
            v.mul_(b2).add_(g * g, alpha=float(f32(1.0) - f32(p.momentum2)))
            step = float(f32(f32(local_rate) * f32(correction)))
            return (h / (torch.sqrt(v) + delta)).mul_(step)
        raise AssertionError(kind)

    # -- testing --------------------------------------------------------------------------
    @torch.no_grad()
    def test_all(self) -> list[TestRecord]:
        """Caffe's Solver::TestAll: every test net, each averaged over its test_iter passes."""
        return [self.test(i) for i in range(len(self.test_nets))]

    @torch.no_grad()
    def test(self, net_id: int) -> TestRecord:
        tn = self.test_nets[net_id]
        sync_shared(self.net.module, tn.module, self._shared[net_id])
        n = self.param.test_iter[net_id]
        sums: dict[str, np.ndarray] = {}
        loss = f32(0.0)
        for k in range(n):
            objective, blobs = tn.forward()
            loss = f32(loss + f32(objective.item()))
            outs = tn.output_values(blobs)
            if k == 0:
                sums = {name: v.astype(np.float32) for name, v in outs.items()}
            else:
                for name, v in outs.items():
                    sums[name] = (sums[name] + v).astype(np.float32)
        means = {name: (v / f32(n)).astype(np.float32) for name, v in sums.items()}
        mean_loss = float(f32(loss / f32(n))) if n else 0.0
        record = TestRecord(self.iter, net_id, means, mean_loss)
        self.tests.append(record)
        self.reporter.test(
            self.iter, net_id,
            [(name, float(v.reshape(-1)[k]), tn.top_weight.get(name, 0.0))
             for name, v in means.items() for k in range(v.size)],
            mean_loss if self.param.test_compute_loss else None)
        return record

    # -- the whole run --------------------------------------------------------------------
    def solve(self, resume: str | os.PathLike[str] | None = None) -> None:
        """Caffe's Solver::Solve: optionally restore, step to max_iter, snapshot, final test.
        `resume="auto"`: from the latest complete snapshot set of snapshot_prefix, if any."""
        if resume is not None and os.fspath(resume) == AUTO_RESUME:
            resume = self.latest_snapshot()
        if resume is not None:
            self.restore(resume)
        self.reporter.message("Solving %s", self.net.ir.name)
        self.reporter.message("Learning Rate Policy: %s", self.param.lr_policy)
        self.reporter.set_total(self.param.max_iter, self.iter)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self.step(self.param.max_iter - self.iter)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.rank == 0 and self.param.snapshot_after_train and (
                not self.param.snapshot or self.iter % self.param.snapshot != 0):
            self.snapshot()
        if self.stop_requested:
            self.reporter.message("Optimization stopped early.")
            return
        if self.param.display and self.iter % self.param.display == 0:
            # Caffe runs one more forward pass to report the final loss.
            with torch.no_grad():
                objective, _ = self.net.forward()
            self._update_smoothed(float(f32(objective.item())), self.iter)
            self.reporter.message("Iteration %d, loss = %s", self.iter,
                                  f"{self.smoothed_loss:.6g}")
        if self.param.test_interval and self.iter % self.param.test_interval == 0 \
                and self.rank == 0:
            self.test_all()
        self.reporter.message("Optimization Done.")

    def _on_sigint(self, signum: int, frame: Any) -> None:
        """Caffe's SIGINT action 'stop': finish the iteration, snapshot, return. A second
        Ctrl-C aborts at once."""
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        self.reporter.message("Stop requested: finishing iteration %d, then a snapshot "
                              "(Ctrl-C again to abort)", self.iter)

    # -- snapshots ------------------------------------------------------------------------
    def snapshot_prefix(self) -> str:
        """snapshot_prefix resolved against the working directory (default: the solver file
        name without extension; a directory prefix gets the solver's name appended)."""
        prefix = self.param.snapshot_prefix
        stem = (os.path.splitext(os.path.basename(self.solver_path))[0]
                if self.solver_path else "solver")
        if not prefix:
            prefix = os.path.splitext(self.solver_path)[0] if self.solver_path else stem
        elif prefix.endswith(("/", os.sep)):
            prefix = os.path.join(prefix, stem)
        return prefix if os.path.isabs(prefix) else os.path.join(self.workdir, prefix)

    def blob_arrays(self) -> dict[str, list[np.ndarray]]:
        """The train net's weights by layer name in Caffe's blob order."""
        out: dict[str, list[np.ndarray]] = {}
        module = self.net.module
        for layer, _key in module.run_order:
            mod = module.layer_module(layer)
            arrays = [getattr(mod, a).detach().to("cpu").float().numpy().copy()
                      for a in mod.caffe_blob_names if getattr(mod, a) is not None]
            if arrays and layer.name not in out:  # by name: a repeated name's first layer
                out[layer.name] = arrays
        return out

    def snapshot(self) -> list[str]:
        """Caffe's Solver::Snapshot (+ safetensors and the data positions), as one set that is
        complete or ignored."""
        prefix = self.snapshot_prefix()
        with snapshot_lock(prefix):
            return self._snapshot(prefix)

    def _snapshot(self, prefix: str) -> list[str]:
        """Write the set: safetensors, caffemodel, solverstate, then the feedstate (the
        manifest that completes the set; see modelport.train.snapshot)."""
        from modelport.export.caffemodel import write_caffemodel

        hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        st = snapshot_filename(prefix, self.iter, ".safetensors")
        write_safetensors(st, self.net.module.state_dict(),
                          {"caffe_iter": str(self.iter), "solver": self.type})
        model = snapshot_filename(prefix, self.iter, ".caffemodel.h5" if hdf5 else ".caffemodel")
        if hdf5:
            self.reporter.message("Snapshotting to HDF5 file %s", model)
            write_weights_h5(model, [lay.name for lay in self.net.ir.layers],
                             self.blob_arrays())
        else:
            self.reporter.message("Snapshotting to binary proto file %s", model)
            write_caffemodel(model, _as_caffe_saves_it(self.net.ir), blobs=self.blob_arrays(),
                             caffe_layout=True)
        state_path = snapshot_filename(prefix, self.iter,
                                       ".solverstate.h5" if hdf5 else ".solverstate")
        learned = model if os.path.isabs(self.param.snapshot_prefix or "/") else \
            os.path.relpath(model, self.workdir)
        state = SolverState(self.iter, learned,
                            [h.detach().to("cpu").float().numpy() for h in self.history],
                            self.current_step)
        if hdf5:
            self.reporter.message("Snapshotting solver state to HDF5 file %s", state_path)
            write_solverstate_h5(state_path, state)
        else:
            self.reporter.message("Snapshotting solver state to binary proto file %s",
                                  state_path)
            write_solverstate(state_path, state)
        write_feedstate(feedstate_path(state_path), self.feed_state(),
                        {"caffemodel": model, "solverstate": state_path, "safetensors": st})
        paths = [model, state_path, st]
        self.snapshots.extend(paths)
        return paths

    def latest_snapshot(self) -> str | None:
        """The solverstate of the latest complete snapshot set of snapshot_prefix (None: no
        set; the run starts at iteration 0). Incomplete later sets are named in the log."""
        path, skipped = latest_snapshot(self.snapshot_prefix())
        for state_path, problem in skipped:
            self.reporter.message("%s: skipped, incomplete snapshot set (%s)", state_path,
                                  problem)
        if path is None:
            self.reporter.message("No complete snapshot of %s: starting at iteration 0",
                                  self.snapshot_prefix())
        else:
            self.reporter.message("Resuming from the latest complete snapshot %s", path)
        return path

    def feed_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for tag, net in [("train", self.net)] + [(f"test{i}", t)
                                                 for i, t in enumerate(self.test_nets)]:
            for layer, feed in net.feeds:
                state[f"{tag}/{layer.name}"] = feed.state()
        return state

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Caffe's Solver::Restore: iter, current_step, history and (if named) the weights;
        modelport's .feedstate.json beside it (when present) restores the data positions. A
        snapshot set modelport did not finish writing is a ConfigError (check_snapshot_set)."""
        state_path = self._user_path(os.fspath(path))
        state = read_solverstate(state_path)
        found = None
        if state.learned_net:
            weights = state.learned_net
            candidates = [self.resolve(weights),
                          os.path.join(os.path.dirname(state_path), os.path.basename(weights))]
            found = next((c for c in candidates if os.path.exists(c)), None)
            if found is None:
                raise FormatError(f"{state_path}: learned_net '{weights}' not found. Fix: put "
                                  "the .caffemodel beside the .solverstate")
        problem = check_snapshot_set(state_path, found)
        if problem is not None:  # an interrupted (or mixed) set: never resume from it
            raise incomplete_set_error(state_path, problem, self.snapshot_prefix())
        if len(state.history) != len(self.history):
            raise ConfigError(f"{state_path}: {len(state.history)} history blobs, the "
                              f"{self.type} solver for this net needs {len(self.history)}. Fix: "
                              "resume with the same net and solver type")
        for j, (h, arr) in enumerate(zip(self.history, state.history)):
            if arr.size != h.numel():
                raise ConfigError(f"{state_path}: history blob {j} has {arr.size} values, "
                                  f"learnable param {j} has {h.numel()}")
            h.copy_(torch.from_numpy(arr.reshape(tuple(h.shape))))
        if found is not None:
            self.load_weights(found)
        self.iter = state.iter
        self.current_step = state.current_step
        feeds = read_feedstate(feedstate_path(state_path))
        if feeds is not None:
            for tag, net in [("train", self.net)] + [(f"test{i}", t)
                                                     for i, t in enumerate(self.test_nets)]:
                for layer, feed in net.feeds:
                    s = feeds.get(f"{tag}/{layer.name}")
                    if s is not None:
                        feed.restore(s)
        else:
            self.reporter.message("%s: no feed state; the data starts from the beginning (as "
                                  "in Caffe)", state_path)

    @torch.no_grad()
    def load_weights(self, caffemodel: str | os.PathLike[str]) -> None:
        """Copy weights by layer name (Caffe's CopyTrainedLayersFrom) into the train net (the
        test nets share its blobs)."""
        stored = {s.name: s for s in _read_weights(os.fspath(caffemodel))}
        module = self.net.module
        loaded: set[str] = set()  # Caffe fills the first layer of a name only
        for layer, _key in module.run_order:
            s = stored.get(layer.name)
            if s is None or not s.blobs or layer.name in loaded:
                continue
            loaded.add(layer.name)
            mod = module.layer_module(layer)
            targets = [getattr(mod, a) for a in mod.caffe_blob_names]
            if len(targets) != len(s.blobs):
                raise ModelportError(f"layer '{layer.name}' (type {layer.type}): the weights "
                                     f"file has {len(s.blobs)} blobs, the net needs "
                                     f"{len(targets)}. Fix: check the caffemodel matches")
            for t, b in zip(targets, s.blobs):
                if t is None:
                    continue
                if b.data.size != t.numel():
                    raise ModelportError(
                        f"layer '{layer.name}' (type {layer.type}): blob shape "
                        f"{tuple(b.data.shape)} in the weights file, {tuple(t.shape)} in the "
                        "net. Fix: check the caffemodel matches the prototxt")
                t.copy_(torch.from_numpy(np.array(b.data, dtype=np.float32))
                        .reshape(t.shape))
