"""The PyTorch twins of make_keras_case.py's Keras models, and how the port tests read a case.

Each twin mirrors its Keras model layer by layer (attribute names = Keras layer names, modules
registered in `model.layers` order), padding with `SamePad2d` or the `modelport.tf.twins`.
`live_source` builds a WeightSource straight from what the live Keras model listed (layer name,
class, config, `[(w.path, w.numpy())]`), independent of any file reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource
from modelport.tf import SamePad2d
from modelport.tf.twins import (
    AvgPool1dSame,
    AvgPool2dSame,
    AvgPool3dSame,
    Conv1dSame,
    Conv2dSame,
    Conv3dSame,
    ConvTranspose1dSame,
    ConvTranspose2dSame,
    ConvTranspose3dSame,
    DepthwiseConv1dSame,
    DepthwiseConv2dSame,
    LayerNormChannels,
    LinearChannels,
    MaxPool1dSame,
    MaxPool2dSame,
    MaxPool3dSame,
    SeparableConv1d,
    SeparableConv2d,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf_port"


class ConvPad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_same = nn.Sequential(SamePad2d((3, 5)), nn.Conv2d(3, 4, (3, 5)))
        self.conv_valid = nn.Conv2d(4, 6, (2, 3))
        self.conv_grouped = Conv2dSame(6, 4, 3, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_grouped(self.conv_valid(F.relu(self.conv_same(x))))


class Stride2Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_s2 = nn.Sequential(SamePad2d(3, 2), nn.Conv2d(3, 4, 3, stride=2))
        self.conv_even_k = Conv2dSame(4, 5, (4, 2), stride=(2, 3))
        self.pool = nn.Sequential(SamePad2d(3, 2, value=float("-inf")), nn.MaxPool2d(3, 2))
        self.conv_1x1 = nn.Conv2d(5, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.pool(self.conv_even_k(self.conv_s2(x))))


class BnNoBias(nn.Module):
    def __init__(self, eps: tuple[float, float, float] = (1e-3, 1e-2, 1e-3)) -> None:
        super().__init__()
        self.conv_a = Conv2dSame(3, 6, 3, bias=False)
        self.bn_a = nn.BatchNorm2d(6, eps=eps[0])
        self.conv_b = Conv2dSame(6, 5, 3, bias=False)
        self.bn_b = nn.BatchNorm2d(5, eps=eps[1])
        self.conv_c = nn.Conv2d(5, 4, 1, bias=False)
        self.bn_c = nn.BatchNorm2d(4, eps=eps[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_a(self.conv_a(x)))
        return self.bn_c(self.conv_c(self.bn_b(self.conv_b(x))))


class DepthwiseSeparable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = DepthwiseConv2dSame(3, 3, depth_multiplier=2, stride=2)
        self.sep_valid = SeparableConv2d(6, 7, 3, padding="valid")
        self.sep_same = SeparableConv2d(7, 4, (3, 2), depth_multiplier=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sep_same(self.sep_valid(self.dw(x)))


class FlattenDense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = Conv2dSame(3, 4, 3, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(5 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.flatten(self.conv(x)))))


class Inception(nn.Module):
    """Registered in Keras's model.layers order (b1_1x1 before b0_1x1), as structure needs."""

    def __init__(self) -> None:
        super().__init__()
        self.b1_1x1 = nn.Conv2d(4, 2, 1)
        self.b0_1x1 = nn.Conv2d(4, 3, 1)
        self.b1_3x3 = Conv2dSame(2, 4, 3)
        self.b2_pool = nn.Sequential(SamePad2d(3, 1, value=float("-inf")), nn.MaxPool2d(3, 1))
        self.b2_1x1 = nn.Conv2d(4, 2, 1)
        self.head = Conv2dSame(9, 5, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.b0_1x1(x)
        b1 = self.b1_3x3(self.b1_1x1(x))
        b2 = self.b2_1x1(self.b2_pool(x))
        return self.head(torch.cat([b0, b1, b2], dim=1))


class ConvTranspose(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up_same = ConvTranspose2dSame(3, 4, 3, stride=2, padding="same")
        self.up_valid = ConvTranspose2dSame(4, 3, (2, 4), stride=(2, 3), padding="valid")
        self.up_small_k = ConvTranspose2dSame(3, 2, (3, 2), stride=2, padding="same")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_small_k(self.up_valid(self.up_same(x)))


class ConvTransposeOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up_op = ConvTranspose2dSame(3, 4, 3, 2, "same", output_padding=1)
        self.up_even = ConvTranspose2dSame(4, 3, 2, 2, "same", output_padding=1)
        self.up_valid_op = ConvTranspose2dSame(3, 2, (3, 4), (3, 2), "valid",
                                               output_padding=(2, 0))
        self.up_dilated = ConvTranspose2dSame(2, 2, 3, 1, "same", dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_dilated(self.up_valid_op(self.up_even(self.up_op(x))))


class Conv1D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_same = Conv1dSame(3, 4, 3, stride=2)
        self.c_causal = Conv1dSame(4, 4, 3, padding="causal", dilation=2)
        self.maxpool = MaxPool1dSame(3, 2)
        self.avgpool = AvgPool1dSame(2, 1)
        self.dw = DepthwiseConv1dSame(4, 3, depth_multiplier=2)
        self.sep = SeparableConv1d(8, 5, 3, padding="valid")
        self.up = ConvTranspose1dSame(5, 4, 3, 2, "same", output_padding=1)
        self.bn = nn.BatchNorm1d(4, eps=1e-3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(20 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.c_causal(self.c_same(x)), (1, 2))  # ZeroPadding1D((1, 2))
        x = self.sep(self.dw(self.avgpool(self.maxpool(x))))
        x = self.up(x).repeat_interleave(2, dim=2)[:, :, 1:-3]  # UpSampling1D, Cropping1D
        return self.fc(self.flatten(self.bn(x)))


class Conv3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_same = Conv3dSame(2, 3, (3, 2, 3), stride=2)
        self.maxpool = MaxPool3dSame(2, 1)
        self.avgpool = AvgPool3dSame((2, 3, 2), 2)
        self.up_op = ConvTranspose3dSame(3, 3, 3, 2, "same", output_padding=(1, 0, 1))
        self.up = ConvTranspose3dSame(3, 2, 2, (1, 2, 1), "same")
        self.upsample = nn.Upsample(scale_factor=(1, 2, 1), mode="nearest")
        self.c_valid = nn.Conv3d(2, 3, 2)
        self.bn = nn.BatchNorm3d(3, eps=1e-3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.c_same(x), (1, 1, 1, 0, 0, 1))  # ZeroPadding3D: W, H, D pairs
        x = self.up(self.up_op(self.avgpool(self.maxpool(x))))
        x = self.upsample(x)[:, :, 1:, 2:-1, :-1]  # Cropping3D
        return self.fc(self.bn(self.c_valid(x)).mean((2, 3, 4)))


class Settings2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_dilated = Conv2dSame(3, 4, 3, dilation=2)
        self.avgpool = AvgPool2dSame(3, 2)
        self.ln = LayerNormChannels(4)
        self.dense_4d = LinearChannels(4, 5)
        self.c_nobias = nn.Conv2d(5, 3, 2, stride=2, bias=False)
        self.bn_bare = nn.BatchNorm2d(3, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.c_dilated(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.pad(x[:, :, 1:, :-2], (0, 1, 1, 2))  # Cropping2D, ZeroPadding2D
        x = self.dense_4d(self.ln(x)).repeat_interleave(2, dim=3)  # UpSampling2D((1, 2))
        return self.bn_bare(self.c_nobias(x)).mean((2, 3))


class ChannelsFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = Conv2dSame(3, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4, eps=1e-3)
        self.pool = MaxPool2dSame(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.bn(self.conv(x)))))


class SlimConvBN(nn.Module):
    """TF-slim's conv2d with normalizer_fn=batch_norm: conv without bias, BN (scale=False,
    epsilon 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], stride: int,
                 padding: str) -> None:
        super().__init__()
        self.conv = Conv2dSame(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Slim(nn.Module):
    """make_keras_case.slim's graph, named as TF-slim names it (name matching, no structure)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = SlimConvBN(3, 8, 3, 2, "valid")
        self.Mixed_3a = nn.ModuleDict({
            "Branch_0": nn.ModuleDict({"Conv2d_0a_1x1": SlimConvBN(8, 4, 1, 1, "same")}),
            "Branch_1": nn.ModuleDict({"Conv2d_0b_1x1": SlimConvBN(8, 3, 1, 1, "same")})})
        self.Conv2d_2a_3x3 = SlimConvBN(7, 6, (3, 2), 2, "same")
        self.flatten = nn.Flatten()
        self.Logits = nn.Linear(4 * 3 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.Conv2d_1a_3x3(x)
        b0 = self.Mixed_3a["Branch_0"]["Conv2d_0a_1x1"](net)
        pooled = F.max_pool2d(SamePad2d(3, 1, value=float("-inf"))(net), 3, 1)
        b1 = self.Mixed_3a["Branch_1"]["Conv2d_0b_1x1"](pooled)
        net = self.Conv2d_2a_3x3(torch.cat([b0, b1], 1))
        return self.Logits(self.flatten(net))


class MobileNetTwin(nn.Module):
    """keras.applications.MobileNet(alpha=0.25, classes=10, classifier_activation=None) under
    its own names (a ModuleList): only structure in model.layers order can fill it."""

    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, alpha: float = 0.25, classes: int = 10) -> None:
        super().__init__()
        c = int(32 * alpha)
        layers: list[nn.Module] = [Conv2dSame(3, c, 3, stride=2, bias=False),
                                   nn.BatchNorm2d(c, eps=1e-3)]
        self.strides = []
        for filters, stride in self.BLOCKS:
            out = int(filters * alpha)
            layers += [DepthwiseConv2dSame(c, 3, stride=stride, bias=False,
                                           padding="same" if stride == 1 else "valid"),
                       nn.BatchNorm2d(c, eps=1e-3), nn.Conv2d(c, out, 1, bias=False),
                       nn.BatchNorm2d(out, eps=1e-3)]
            self.strides.append(stride)
            c = out
        self.features = nn.ModuleList(layers)
        self.classifier = nn.Conv2d(c, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features
        x = F.relu6(f[1](f[0](x)))
        for i, stride in enumerate(self.strides):
            dw, bn_dw, pw, bn_pw = f[2 + 4 * i: 6 + 4 * i]
            if stride == 2:
                x = F.pad(x, (0, 1, 0, 1))  # ZeroPadding2D(((0, 1), (0, 1)))
            x = F.relu6(bn_pw(pw(F.relu6(bn_dw(dw(x))))))
        x = x.mean((2, 3), keepdim=True)  # GlobalAveragePooling2D(keepdims=True)
        return self.classifier(x).flatten(1)


TWINS: dict[str, Callable[[], nn.Module]] = {
    "conv_pad": ConvPad, "stride2_odd": Stride2Odd, "bn_nobias": BnNoBias,
    "depthwise_separable": DepthwiseSeparable, "flatten_dense": FlattenDense,
    "inception": Inception, "conv_transpose": ConvTranspose,
    "conv_transpose_op": ConvTransposeOp, "conv1d": Conv1D, "conv3d": Conv3D,
    "settings2d": Settings2D, "channels_first": ChannelsFirst,
}
# cases whose Keras model takes and returns channels-first arrays (no NHWC move)
NCHW_CASES = {"channels_first"}
# port_weights arguments of a case: channels_first's Flatten(data_format="channels_first")
# permutes to (h, w, c), which no file says (the port refuses without the shape)
PORT_KWARGS: dict[str, dict[str, object]] = {
    "channels_first": {"flatten_shapes": {"fc": (3, 3, 4)}}}
CASES = list(TWINS)


def live_source(case_dir: Path) -> WeightSource:
    """The WeightSource of the live Keras model's own weight list (live.json + live.npz)."""
    meta = json.loads((case_dir / "live.json").read_text())
    with np.load(case_dir / "live.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    layers, variables = [], {}
    for entry in meta:
        vs = []
        for j, path in enumerate(entry["paths"]):
            v = TFVariable(path, arrays[f"{entry['index']}:{j}"], layer=entry["name"],
                           role=path.rsplit("/", 1)[-1])
            vs.append(v)
            variables[path] = v
        layers.append(KerasLayer(entry["name"], entry["class_name"], entry["config"], vs,
                                 entry["index"]))
    return WeightSource(case_dir / "live.json", "keras-live", variables, layers,
                        names_from="config.json")


def sample(case_dir: Path) -> torch.Tensor:
    """The case's input, channels first, as the twin takes it."""
    x = np.load(case_dir / "input.npy", allow_pickle=False)
    if case_dir.name not in NCHW_CASES:
        x = np.moveaxis(x, -1, 1)
    return torch.from_numpy(np.ascontiguousarray(x))


FORMATS = ("live", "keras", "weights_h5", "ckpt")
FILES = {"keras": "model.keras", "weights_h5": "model.weights.h5", "ckpt": "ckpt.index",
         "live": "live.json"}
# A Keras 3 .weights.h5 keeps no layer config: bn_nobias's BatchNorms with center=False /
# scale=False are ambiguous there (test_port_failures covers that refusal and the rule fix).
AMBIGUOUS = {("bn_nobias", "weights_h5")}


def file_source(case_dir: Path, fmt: str) -> WeightSource | Path:
    """What port_weights gets for one format of a case (a path for the file formats)."""
    import pytest

    if fmt == "live":
        return live_source(case_dir)
    path = case_dir / ("ckpt" if fmt == "ckpt" else FILES[fmt])
    if fmt == "ckpt":
        pytest.importorskip("google_crc32c", reason="TF checkpoints need google-crc32c "
                            "(pip install 'modelport[tf]')")
    else:
        pytest.importorskip("h5py", reason="Keras files need h5py (pip install 'modelport[tf]')")
    return path


def port_and_verify(case_dir: Path, fmt: str) -> tuple[object, object]:
    """Port one case's file into its twin and compare the twin with TF's outputs."""
    from modelport.tf import port_weights
    from modelport.tf.verify_tf import verify_tf

    case = case_dir.name
    twin = TWINS[case]()
    report = port_weights(file_source(case_dir, fmt), twin, sample_input=sample(case_dir),
                          **PORT_KWARGS.get(case, {}))  # type: ignore[arg-type]
    parity = verify_tf(twin, case_dir / "input.npy", case_dir,
                       layout="nchw" if case in NCHW_CASES else "nhwc")
    return report, parity
