"""Replay Caffe's random draws while a solver builds and runs its nets (`Solver(rng="caffe")`).

Caffe (CPU mode, one solver) takes every random number of a training run from streams it
seeds deterministically from `random_seed` (solver.cpp `Solver::Init`:
`Caffe::set_random_seed(random_seed + solver_rank)`), in this order:

- `Net::Init` sets the layers up one by one in net order (train net, then each test net):
  - parameter layers run their fillers in LayerSetUp, weight before bias (filler.hpp;
    Scale: its scale blob, then its internal Bias layer's blob). They draw even when
    `--weights` or the solver's `weights` later overwrite them. A test net's fillers draw too,
    although its shared layers then use the train net's blobs.
  - data layers, in the main thread: `DataTransformer::InitRand` (one draw when
    `mirror || (TRAIN && crop_size)`; it is wasted), ImageData's shuffle seed (one draw, then
    the list is shuffled by `caffe::shuffle` on that stream) and `rand_skip` (one draw,
    `% rand_skip`), the prefetching layer's second `InitRand` (the transformer seed actually
    used), and the prefetch thread's seed (`StartInternalThread`, one draw, never used by
    Data/ImageData).
- per TRAIN forward, in layer order: Dropout's mask `caffe_rng_bernoulli<double>(count,
  1. - threshold_)`, and DummyData's non-constant tops (their fillers).
- per item, on the prefetch thread: the transformer's own mt19937, `Rand(2)` for the mirror,
  then `Rand(H - crop + 1)`, `Rand(W - crop + 1)` at TRAIN (a constant number of draws per
  item, so item k starts at draw k * draws_per_item). ImageData reshuffles the current order
  on its own stream after every pass.

Not replayable, and refused: `random_seed < 0` (Caffe seeds from /dev/urandom), several
solvers (each GPU's seed and data sharding), HDF5Data `shuffle` (std::random_shuffle on
std::rand), data layers fed by the caller, and parameter layers whose fillers this module does
not know. A GPU Caffe draws Dropout masks from cuRAND: what is replayed is Caffe's CPU mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from modelport.caffe_rng import CaffeRNG
from modelport.errors import ConfigError, LayerError
from modelport.fillers import fill
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer
from modelport.layers.registry import facts

__all__ = ["CaffeItemRand", "CaffeOrder", "check_replayable", "init_module", "init_net"]


def check_replayable(seed: int, world: int) -> CaffeRNG:
    """The global stream of a solver with `random_seed` = seed, or a ConfigError saying why
    Caffe's run cannot be replayed."""
    if seed < 0:
        raise ConfigError("--caffe-rng: the solver has no random_seed, so Caffe seeded its "
                          "RNG from /dev/urandom and the run cannot be replayed. Fix: set "
                          "random_seed in the solver (as the Caffe run did)")
    if world != 1:
        raise ConfigError("--caffe-rng replays one CPU solver; multi-GPU Caffe seeds every "
                          "solver and shards its data differently. Fix: run one process")
    return CaffeRNG(seed)


class CaffeItemRand:
    """A DataTransformer's own mt19937 (`Rand(n) = mt() % n`), positioned at any item.

    Every item takes the same number of draws, so item k starts at draw k * per_item; items
    asked for in order continue the stream, an earlier item re-seeds and skips.
    """

    def __init__(self, seed: int, per_item: int) -> None:
        self.seed = seed
        self.per_item = per_item
        self._rng = CaffeRNG(seed)

    def for_item(self, k: int) -> CaffeItemRand:
        target = k * self.per_item
        if target < self._rng.consumed:
            self._rng = CaffeRNG(self.seed)
        self._rng.discard(target - self._rng.consumed)
        return self

    def integers(self, n: int) -> int:
        """`DataTransformer::Rand(n)` (called as numpy's `Generator.integers(n)`)."""
        return self._rng.rand_mod(n)


class CaffeOrder:
    """ImageData's line orders: `caffe::shuffle` of the list at setup (epoch 0) and of the
    current order after every pass, all on the layer's `prefetch_rng_`."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size
        self._restart()

    def _restart(self) -> None:
        self._rng = CaffeRNG(self.seed)
        self._order = list(range(self.size))
        self._rng.shuffle(self._order)
        self._epoch = 0

    def order(self, epoch: int) -> np.ndarray:
        if epoch < self._epoch:
            self._restart()
        while self._epoch < epoch:
            self._rng.shuffle(self._order)
            self._epoch += 1
        return np.asarray(self._order, dtype=np.int64)


def _needs_rand(layer: Layer, phase: int) -> bool:
    """DataTransformer::InitRand's condition: mirror, or a TRAIN-phase crop."""
    from modelport.train.data import effective_transform_param

    tp = effective_transform_param(layer)
    return bool(tp.mirror) or (phase == caffe_pb2.TRAIN and tp.crop_size > 0)


def _setup_data(layer: Layer, feed: Any, rng: CaffeRNG, phase: int) -> None:
    """A data layer's setup draws in the main thread, wiring its feed to Caffe's streams."""
    from modelport.train.data_source import ItemSource
    from modelport.train.feeds import DummyFeed, HDF5Feed, PipelineFeed

    needs_rand = _needs_rand(layer, phase)
    if isinstance(feed, DummyFeed):
        feed.caffe_rng = rng  # refilled from the global stream at every forward
        return
    if isinstance(feed, HDF5Feed):
        if layer.param.hdf5_data_param.shuffle:
            raise LayerError(layer.name, layer.type, "--caffe-rng: HDF5Data shuffles with "
                             "std::random_shuffle (std::rand), which random_seed does not seed",
                             "set shuffle: false, or train without --caffe-rng")
        return  # HDF5DataLayer is a plain Layer: no transformer, no thread, no draws
    source = getattr(feed, "source", None)
    if not isinstance(feed, PipelineFeed) or not isinstance(source, ItemSource):
        raise LayerError(layer.name, layer.type, "--caffe-rng cannot replay the draws of a "
                         "data layer fed by the caller", "let modelport read the layer's "
                         "source, or train without --caffe-rng")
    if needs_rand:
        rng.rand()  # BaseDataLayer::LayerSetUp -> InitRand: this seed is replaced below
    if layer.type == "ImageData":
        from modelport.train.data_image import ImageDataSource

        assert isinstance(source, ImageDataSource)
        p = layer.param.image_data_param
        if p.shuffle:
            source.use_caffe_order(CaffeOrder(rng.rand(), len(source)))
        if p.rand_skip:
            skip = rng.rand() % int(p.rand_skip)
            if skip >= len(source):
                raise LayerError(layer.name, layer.type, f"rand_skip drew {skip} but the list "
                                 f"has only {len(source)} images (Caffe CHECK fails)",
                                 "lower rand_skip")
            source.skip = skip
    elif layer.type != "Data":
        raise LayerError(layer.name, layer.type, "--caffe-rng does not know this data layer's "
                         "draws", "train without --caffe-rng")
    if needs_rand:
        # BasePrefetchingDataLayer::LayerSetUp calls InitRand again: the seed in use.
        transformer = source.transformer  # type: ignore[attr-defined]
        per_item = int(transformer.mirror) + (2 if (phase == caffe_pb2.TRAIN
                                                    and transformer.crop_size) else 0)
        source.caffe_transform_rand = CaffeItemRand(rng.rand(), per_item)
    rng.rand()  # InternalThread::StartInternalThread: the prefetch thread's seed


def _fillers(layer: Layer, module: Any) -> list[tuple[str, caffe_pb2.FillerParameter]]:
    """(blob attribute, FillerParameter) in the order the layer's LayerSetUp fills them: the
    fillers its type declares where it is registered (LayerFacts.fillers)."""
    names = tuple(getattr(module, "caffe_blob_names", ()))
    declared = facts(layer.type).fillers
    if declared is None:
        if not names:
            return []
        raise LayerError(layer.name, layer.type, "--caffe-rng does not know how Caffe fills "
                         "this layer's blobs", "train without --caffe-rng")
    return list(zip(names, declared(layer)))


def _caffe_blob_shape(layer: Layer, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
    """The shape of the blob Caffe fills (a channel-shared Normalize/PReLU scale has 0 axes)."""
    if layer.type == "Normalize" and layer.param.norm_param.channel_shared:
        return ()
    return tuple(tensor.shape)


def init_net(net: Any, rng: CaffeRNG, phase: int) -> None:
    """Net::Init's draws for a solver's PhaseNet `net` (its module and data feeds)."""
    init_module(net.module, rng, phase, {layer.name: (layer, feed) for layer, feed in net.feeds})


def init_module(module: Any, rng: CaffeRNG, phase: int,
                 feeds: Mapping[str, tuple[Layer, Any]] | None = None) -> None:
    """Net::Init's draws for a CaffeNet `module` built at `phase`, in layer order: the data
    layers' seeds (`feeds`: data layer name -> (layer, feed)) and every parameter layer's
    fillers, written into the blobs no weights file gave; Dropout modules are wired to `rng`
    for their TRAIN-phase masks, DummyData feeds for their refills."""
    feeds = dict(feeds or {})
    seen_names: set[str] = set()
    dropout_seen = False
    for layer, key in zip(module.net.layers, module.module_keys):
        if key is None:
            if layer.name in feeds:
                data_layer, feed = feeds[layer.name]
                if data_layer.type == "DummyData" and dropout_seen:
                    raise LayerError(data_layer.name, data_layer.type, "--caffe-rng: DummyData "
                                     "after a Dropout layer draws between Dropout masks, which "
                                     "is not replayed", "move the DummyData layer first")
                _setup_data(data_layer, feed, rng, phase)
            continue
        sub = module._modules[key]
        if layer.type == "Dropout":
            dropout_seen = True
            sub.caffe_rng = rng
            continue
        specs = layer.param.param
        for j, (attr, filler) in enumerate(_fillers(layer, sub)):
            tensor = getattr(sub, attr)
            values = fill(filler, _caffe_blob_shape(layer, attr, tensor), rng=rng)
            name = specs[j].name if j < len(specs) else ""
            shared = bool(name) and name in seen_names
            if name:
                seen_names.add(name)
            if layer.blobs or shared:
                continue  # drawn, then replaced by the weights file / the owner's blob
            with torch.no_grad():
                tensor.copy_(values.reshape(tensor.shape).to(tensor.device))
