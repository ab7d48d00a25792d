"""The CLI error contract, subcommand by subcommand: bad input gives exit status != 0, exactly one
`modelport: error: ...` line on stderr, no traceback and no partial output file.

Each case here was found by feeding every subcommand bad files and option values (an audit); they
are regressions for errors that used to escape as OSError / UnicodeDecodeError / ValueError /
sklearn tracebacks, or were silently accepted.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from modelport.cli import main

GOLDEN = pathlib.Path(__file__).parent / "golden"
CONV = GOLDEN / "caffe" / "conv_basic"
SOLVER = GOLDEN / "solver" / "sgd_step_lrmult"
IMAGES = GOLDEN / "transform" / "images"


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `modelport *argv` in-process; assert the contract; return the error line."""
    before = _files(tmp_path)
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc != 0, f"accepted: {argv}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("modelport: error: "), err
    assert _files(tmp_path) == before, f"left behind {_files(tmp_path) - before}"
    return lines[0]


@pytest.fixture()
def regular(tmp_path: pathlib.Path) -> pathlib.Path:
    """A regular file: any output path below it cannot be created."""
    path = tmp_path / "regular"
    path.write_text("not a folder\n")
    return path


# ------------------------------------------------------------------------- convert / inspect


@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_empty_prototxt_defines_no_layers(tmp_path, capsys, command) -> None:
    empty = tmp_path / "empty.prototxt"
    empty.write_text("")
    extra = ["-o", str(tmp_path / "out")] if command == "convert" else []
    line = _run_error(tmp_path, capsys, command, str(empty), str(CONV / "weights.caffemodel"),
                      *extra)
    assert "empty.prototxt: defines no layers" in line


def test_solver_given_as_net_names_the_unknown_field(tmp_path, capsys) -> None:
    line = _run_error(tmp_path, capsys, "inspect", str(SOLVER / "solver.prototxt"))
    assert "solver.prototxt:1:" in line and "net" in line


@pytest.mark.parametrize("command", ["convert", "inspect", "verify"])
def test_input_shape_for_an_unknown_blob(tmp_path, capsys, command) -> None:
    extra = {"convert": ["-o", str(tmp_path / "out")], "verify": ["-q"], "inspect": []}[command]
    weights = [] if command == "inspect" else [str(CONV / "weights.caffemodel")]
    line = _run_error(tmp_path, capsys, command, str(CONV / "net.prototxt"), *weights,
                      "--input-shape", "dta=2,3,13,11", *extra)
    assert "'dta'" in line and "data" in line


# ---------------------------------------------------------------------------------- verify


@pytest.mark.parametrize("option", ["--json", "--report"])
def test_verify_report_under_a_regular_file(tmp_path, capsys, regular, option) -> None:
    line = _run_error(tmp_path, capsys, "verify", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", option,
                      str(regular / "sub" / "report.out"))
    assert "regular" in line


def test_verify_json_is_a_folder(tmp_path, capsys) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    line = _run_error(tmp_path, capsys, "verify", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--json", str(folder))
    assert "is an existing folder" in line


def test_verify_input_that_is_not_npy(tmp_path, capsys) -> None:
    fake = tmp_path / "batch.npy"
    fake.write_text("hello")
    line = _run_error(tmp_path, capsys, "verify", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--input", f"data={fake}")
    assert "is not a .npy file" in line and "Python objects" not in line


def test_verify_random_input_too_big_to_allocate(tmp_path, capsys) -> None:
    # 2 PiB: beyond any address space, so the allocation fails at once whatever the overcommit
    line = _run_error(tmp_path, capsys, "verify", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--input-shape",
                      "data=100000000,3,1000,1000")
    assert "--input-shape" in line


# ----------------------------------------------------------------------------------- train


@pytest.fixture()
def solver_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "solver"
    folder.mkdir()
    for name in ("solver.prototxt", "train.prototxt", "train_h5_list.txt", "train.h5"):
        shutil.copy(SOLVER / name, folder / name)
    return folder


def test_train_workdir_is_a_file(tmp_path, capsys, solver_dir, regular) -> None:
    line = _run_error(tmp_path, capsys, "train", str(solver_dir / "solver.prototxt"),
                      "--no-progress", "--quiet", "--workdir", str(regular))
    assert "working directory" in line


def test_train_workdir_missing_is_not_created(tmp_path, capsys, solver_dir) -> None:
    _run_error(tmp_path, capsys, "train", str(solver_dir / "solver.prototxt"), "--no-progress",
               "--quiet", "--workdir", str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()


def test_train_metrics_under_a_regular_file(tmp_path, capsys, solver_dir, regular) -> None:
    line = _run_error(tmp_path, capsys, "train", str(solver_dir / "solver.prototxt"),
                      "--no-progress", "--quiet", "--workdir", str(solver_dir),
                      "--metrics", str(regular / "sub" / "metrics.csv"))
    assert "metrics CSV" in line


def test_train_undecodable_image_has_one_fix(tmp_path, capsys) -> None:
    folder = tmp_path / "imagedata"
    folder.mkdir()
    (folder / "bad.png").write_text("not an image")
    (folder / "list.txt").write_text("bad.png 0\n")
    (folder / "train.prototxt").write_text(
        'layer { name: "data" type: "ImageData" top: "data" top: "label"\n'
        '  image_data_param { source: "list.txt" batch_size: 1 new_height: 5 new_width: 7 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
        '  inner_product_param { num_output: 3 } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    (folder / "solver.prototxt").write_text('net: "train.prototxt" base_lr: 0.1 max_iter: 1 '
                                            'lr_policy: "fixed" snapshot_prefix: "s"\n')
    line = _run_error(tmp_path, capsys, "train", str(folder / "solver.prototxt"),
                      "--no-progress", "--quiet", "--workdir", str(folder))
    assert "bad.png" in line and line.count("Fix:") == 1


# -------------------------------------------------------------------------------- features


def _features(tmp_path, capsys, images: str, output: str, *extra: str) -> str:
    return _run_error(tmp_path, capsys, "features", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--layers", "conv",
                      "--images", images, "-o", output, *extra)


def test_features_image_given_as_list_file(tmp_path, capsys) -> None:
    line = _features(tmp_path, capsys, str(IMAGES / "img_a.png"), str(tmp_path / "f.npz"))
    assert "img_a.png" in line and "not a text list file" in line


def test_features_missing_image_leaves_no_parts_folder(tmp_path, capsys) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{IMAGES / 'img_a.png'} 0\n{tmp_path / 'nope.png'} 1\n")
    line = _features(tmp_path, capsys, str(listing), str(tmp_path / "f.npz"))
    assert "nope.png" in line


def test_features_bad_mean_file_leaves_no_parts_folder(tmp_path, capsys) -> None:
    empty = tmp_path / "mean.binaryproto"
    empty.write_bytes(b"")
    _features(tmp_path, capsys, str(IMAGES), str(tmp_path / "f.npz"), "--mean-file", str(empty))


def test_features_output_under_a_regular_file(tmp_path, capsys, regular) -> None:
    _features(tmp_path, capsys, str(IMAGES), str(regular / "sub" / "f.npz"))


def test_features_output_is_a_folder(tmp_path, capsys) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    line = _features(tmp_path, capsys, str(IMAGES), str(folder))
    assert "is an existing folder" in line


def test_features_resize_too_large(tmp_path, capsys) -> None:
    # 3 TB per image: OpenCV refuses to allocate it whatever the machine
    line = _features(tmp_path, capsys, str(IMAGES), str(tmp_path / "f.npz"),
                     "--resize", "1000000,1000000")
    assert "cannot resize" in line


def test_features_root_must_be_a_folder(tmp_path, capsys) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("img_a.png 0\n")
    line = _features(tmp_path, capsys, str(listing), str(tmp_path / "f.npz"),
                     "--root", str(tmp_path / "missing"))
    assert "--root" in line


# -------------------------------------------------------------------------------- transfer


@pytest.fixture()
def dataset(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "data"
    for i, name in enumerate(sorted(os.listdir(IMAGES))):
        folder = root / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES / name, folder / name)
    return root


@pytest.mark.parametrize(("option", "value"), [
    ("--lr", "-1"), ("--svm-c", "0"), ("--epochs", "0"), ("--gtn-width", "0"),
    ("--weight-decay", "-0.5"), ("--batch-size", "0"), ("--lr", "nan"),
])
def test_transfer_bad_training_options(tmp_path, capsys, dataset, option, value) -> None:
    line = _run_error(tmp_path, capsys, "transfer", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--layers", "conv",
                      "--data", str(dataset), "-o", str(tmp_path / "out"), option, value)
    assert option in line


def test_transfer_output_under_a_regular_file(tmp_path, capsys, dataset, regular) -> None:
    _run_error(tmp_path, capsys, "transfer", str(CONV / "net.prototxt"),
               str(CONV / "weights.caffemodel"), "-q", "--epochs", "1", "--layers", "conv",
               "--data", str(dataset), "-o", str(regular / "sub"))


def test_transfer_output_is_a_file(tmp_path, capsys, dataset, regular) -> None:
    line = _run_error(tmp_path, capsys, "transfer", str(CONV / "net.prototxt"),
                      str(CONV / "weights.caffemodel"), "-q", "--epochs", "1", "--layers",
                      "conv", "--data", str(dataset), "-o", str(regular))
    assert "not a folder" in line
