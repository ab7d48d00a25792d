"""Classifier heads on extracted features, as compared in the Gated Transfer Network paper.

Every head takes the full list of per-layer feature matrices (one (N, d_i) array per extracted
layer, in the order the layers were requested) and uses the layers it was built for:

* `SoftmaxHead(layer)`: a linear softmax classifier on one layer ("Softmax FC6").
* `AverageHead(layers)`: a linear softmax on the element-wise average of equal-width layers
  ("Simple Average FC6, FC7").
* `EnsembleHead(layers)`: one softmax per layer; the class probabilities are averaged
  ("Ensemble Softmax FC6, Softmax FC7").
* `SVMHead(layer)`: a linear SVM (scikit-learn LinearSVC, one-vs-rest) on one layer, the
  CNN-SVM baseline of Razavian et al. ("CNN features off-the-shelf").
* `GatedHead(layers)`: the Gated Transfer Network (`gated.GatedTransfer`).

The torch heads are trained with full-batch (or mini-batch) Adam on the cross-entropy loss, with
L2 weight decay, for a fixed number of epochs from a fixed seed: the same recipe for every head,
so the comparison is about the head and not about the tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from modelport.errors import ConfigError
from modelport.transfer.gated import GatedTransfer

Features = Sequence[np.ndarray]


@dataclass(frozen=True)
class TrainConfig:
    """How the torch heads are trained (the same for all of them)."""

    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-3
    batch_size: int | None = None  # None: full batch
    seed: int = 0


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _check(features: Features, layers: Sequence[int], who: str) -> None:
    for i in layers:
        if not 0 <= i < len(features):
            raise ConfigError(f"{who}: layer index {i} is out of range for "
                              f"{len(features)} feature layers")


def train_module(model: nn.Module, forward: Callable[[Sequence[torch.Tensor]], torch.Tensor],
                 inputs: Sequence[torch.Tensor], labels: np.ndarray, cfg: TrainConfig,
                 ) -> list[float]:
    """Fit `model` by Adam on cross-entropy; returns the loss after each epoch.

    Runs on one intra-op thread: these are small dense problems, where torch's thread pool
    only adds synchronisation (20-50x slower on a busy 2-core machine), and one thread makes
    every run repeatable bit for bit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, forward, inputs, labels, cfg)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, forward: Callable[[Sequence[torch.Tensor]], torch.Tensor],
           inputs: Sequence[torch.Tensor], labels: np.ndarray, cfg: TrainConfig) -> list[float]:
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = int(y.shape[0])
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        bs = n if not cfg.batch_size else min(cfg.batch_size, n)
        model.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(n) if bs < n else torch.arange(n)
            total = 0.0
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(forward([x[idx] for x in inputs]), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
        model.eval()
    return losses


@dataclass
class Head:
    """Base class: `fit(features, labels)`, `predict_proba(features)`, `predict(features)`."""

    name: str = ""
    num_classes: int = 0
    losses: list[float] = field(default_factory=list)

    def fit(self, features: Features, labels: np.ndarray) -> Head:
        raise NotImplementedError

    def predict_proba(self, features: Features) -> np.ndarray:
        raise NotImplementedError

    def predict(self, features: Features) -> np.ndarray:
        return np.asarray(self.predict_proba(features)).argmax(axis=1)

    def accuracy(self, features: Features, labels: np.ndarray) -> float:
        return float((self.predict(features) == np.asarray(labels)).mean())


def _num_classes(labels: np.ndarray, given: int) -> int:
    return max(int(given), int(np.max(labels)) + 1)


@dataclass
class SoftmaxHead(Head):
    """Linear softmax classifier on feature layer `layer`."""

    layer: int = 0
    cfg: TrainConfig = field(default_factory=TrainConfig)
    model: nn.Linear | None = None

    def fit(self, features: Features, labels: np.ndarray) -> SoftmaxHead:
        _check(features, [self.layer], self.name or "SoftmaxHead")
        self.num_classes = _num_classes(labels, self.num_classes)
        x = _tensor(features[self.layer])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            self.model = nn.Linear(x.shape[1], self.num_classes)
        model = self.model
        self.losses = train_module(model, lambda xs: model(xs[0]), [x], labels, self.cfg)
        return self

    def logits(self, features: Features) -> torch.Tensor:
        if self.model is None:
            raise ConfigError(f"{self.name or 'SoftmaxHead'} is not trained yet: call fit first")
        with torch.no_grad():
            return self.model(_tensor(features[self.layer]))

    def predict_proba(self, features: Features) -> np.ndarray:
        return torch.softmax(self.logits(features), dim=1).numpy()


@dataclass
class AverageHead(Head):
    """Linear softmax on the element-wise average of equal-width feature layers."""

    layers: tuple[int, ...] = (0, 1)
    cfg: TrainConfig = field(default_factory=TrainConfig)
    inner: SoftmaxHead | None = None

    def _average(self, features: Features) -> list[np.ndarray]:
        _check(features, self.layers, self.name or "AverageHead")
        widths = {features[i].shape[1] for i in self.layers}
        if len(widths) != 1:
            raise ConfigError(f"{self.name or 'AverageHead'}: the layers have different widths "
                              f"{sorted(widths)}; an average needs equal widths. Fix: pick "
                              "layers of one width, or use the gated head (it projects)")
        stacked = np.stack([np.asarray(features[i], np.float32) for i in self.layers])
        return [stacked.mean(axis=0, dtype=np.float32)]

    def fit(self, features: Features, labels: np.ndarray) -> AverageHead:
        self.inner = SoftmaxHead(self.name, self.num_classes, layer=0, cfg=self.cfg)
        self.inner.fit(self._average(features), labels)
        self.num_classes, self.losses = self.inner.num_classes, self.inner.losses
        return self

    def predict_proba(self, features: Features) -> np.ndarray:
        if self.inner is None:
            raise ConfigError(f"{self.name or 'AverageHead'} is not trained yet: call fit first")
        return self.inner.predict_proba(self._average(features))


@dataclass
class EnsembleHead(Head):
    """One softmax per layer, trained independently; predicts the mean of their probabilities."""

    layers: tuple[int, ...] = (0, 1)
    cfg: TrainConfig = field(default_factory=TrainConfig)
    members: list[SoftmaxHead] = field(default_factory=list)

    def fit(self, features: Features, labels: np.ndarray) -> EnsembleHead:
        _check(features, self.layers, self.name or "EnsembleHead")
        self.members = [SoftmaxHead(f"{self.name}[{i}]", self.num_classes, layer=i,
                                    cfg=self.cfg).fit(features, labels) for i in self.layers]
        self.num_classes = self.members[0].num_classes
        return self

    def predict_proba(self, features: Features) -> np.ndarray:
        if not self.members:
            raise ConfigError(f"{self.name or 'EnsembleHead'} is not trained yet: call fit first")
        return np.mean([m.predict_proba(features) for m in self.members], axis=0)


@dataclass
class SVMHead(Head):
    """Linear SVM (scikit-learn LinearSVC, squared hinge, one-vs-rest) on one layer."""

    layer: int = 0
    C: float = 1.0
    seed: int = 0
    model: object | None = None

    def fit(self, features: Features, labels: np.ndarray) -> SVMHead:
        from modelport.optional import require

        linear_svc = require("sklearn.svm", "transfer", "the SVM head").LinearSVC
        _check(features, [self.layer], self.name or "SVMHead")
        self.num_classes = _num_classes(labels, self.num_classes)
        self.model = linear_svc(C=self.C, random_state=self.seed, max_iter=20000)
        self.model.fit(features[self.layer], labels)  # type: ignore[attr-defined]
        return self

    def predict(self, features: Features) -> np.ndarray:
        if self.model is None:
            raise ConfigError(f"{self.name or 'SVMHead'} is not trained yet: call fit first")
        return np.asarray(self.model.predict(features[self.layer]))  # type: ignore[attr-defined]

    def predict_proba(self, features: Features) -> np.ndarray:
        """One-hot of the SVM's decision (an SVM gives no probabilities)."""
        pred = self.predict(features)
        out = np.zeros((len(pred), self.num_classes), dtype=np.float32)
        out[np.arange(len(pred)), pred] = 1.0
        return out


@dataclass
class GatedHead(Head):
    """The Gated Transfer Network on the given layers (see `gated.GatedTransfer`)."""

    layers: tuple[int, ...] = (0, 1)
    width: int | None = None
    cfg: TrainConfig = field(default_factory=TrainConfig)
    model: GatedTransfer | None = None

    def fit(self, features: Features, labels: np.ndarray) -> GatedHead:
        _check(features, self.layers, self.name or "GatedHead")
        self.num_classes = _num_classes(labels, self.num_classes)
        xs = [_tensor(features[i]) for i in self.layers]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            self.model = GatedTransfer([x.shape[1] for x in xs], self.num_classes, self.width)
        model = self.model
        self.losses = train_module(model, model, xs, labels, self.cfg)
        return self

    def _inputs(self, features: Features) -> list[torch.Tensor]:
        if self.model is None:
            raise ConfigError(f"{self.name or 'GatedHead'} is not trained yet: call fit first")
        return [_tensor(features[i]) for i in self.layers]

    def predict_proba(self, features: Features) -> np.ndarray:
        xs = self._inputs(features)
        assert self.model is not None
        with torch.no_grad():
            return torch.softmax(self.model(xs), dim=1).numpy()

    def gates(self, features: Features) -> np.ndarray:
        """The normalised gates, (N, n_layers, d)."""
        xs = self._inputs(features)
        assert self.model is not None
        with torch.no_grad():
            return self.model.gates(xs).numpy()


@dataclass(frozen=True)
class Standardizer:
    """Per-layer, per-dimension z-scoring fitted on the training features."""

    means: tuple[np.ndarray, ...]
    stds: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, features: Features) -> Standardizer:
        means = tuple(np.asarray(f, np.float64).mean(0).astype(np.float32) for f in features)
        stds = tuple((np.asarray(f, np.float64).std(0) + 1e-6).astype(np.float32)
                     for f in features)
        return cls(means, stds)

    def __call__(self, features: Features) -> list[np.ndarray]:
        return [((np.asarray(f, np.float32) - m) / s).astype(np.float32)
                for f, m, s in zip(features, self.means, self.stds)]
