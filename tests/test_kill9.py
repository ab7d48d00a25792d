"""kill -9 at random points of `modelport convert` and `modelport train` (issue 15, items 2-3).

tests/crash_driver.py forks one child per trial that runs the command and SIGKILLs itself just
before a randomly chosen filesystem step (every step is chosen at least once when there are
fewer steps than trials). After each kill:

- convert (into a folder holding an older conversion and a file of the user's): what the
  folder shows is exactly the old or exactly the new conversion (every file's bytes), its
  `load()` gives the old or the new weights, the user's file is kept, and the next convert
  into it succeeds and leaves no stale staging behind;
- train (snapshots every 2 iterations): every snapshot set is complete and equal to the one an
  uninterrupted run writes, or refused by `--resume` as incomplete; `--resume auto` continues
  from the latest complete set and ends bit-identical to the uninterrupted run.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from golden_support import GOLDEN

DRIVER = pathlib.Path(__file__).with_name("crash_driver.py")
TRIALS = 20


def _drive(mode: str, root: pathlib.Path, spec: dict) -> dict:
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(DRIVER), mode, str(root), str(spec_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # a child that exited 99 raised something other than SystemExit: its traceback
    result["child_tracebacks"] = [p.read_text()[-2000:] for p in root.glob("child-*.traceback")]
    return result


@pytest.mark.slow
def test_kill9_during_convert_leaves_old_or_new(tmp_path: pathlib.Path) -> None:
    caffe = GOLDEN / "caffe"
    mean = str(caffe / "mean_binaryproto" / "mean.binaryproto")
    nets = [[str(caffe / "conv_basic" / "net.prototxt"),
             str(caffe / "conv_basic" / "weights.caffemodel"), mean],
            [str(caffe / "conv_hw" / "net.prototxt"),
             str(caffe / "conv_hw" / "weights.caffemodel"), None]]
    result = _drive("convert", tmp_path, {"seed": 15, "trials": TRIALS, "nets": nets,
                                          "concurrent": 8})
    trials = result["trials"]
    assert len(trials) == TRIALS and result["steps"] >= 3
    killed = [t for t in trials if t["rc"] == -9]
    assert len(killed) == TRIALS, trials  # every chosen step was reached
    bad = [t for t in trials
           if t["state"] not in ("old", "new")       # a mix of two conversions
           or t["load"] != t["state"]                # load() gave something else
           or not (t["next_rc"] == 0 and t["next_is_new"])
           or t["bytes"] > t["ref_bytes"]]           # a stale staging folder left behind
    assert not bad, json.dumps(bad, indent=1)
    # two converts into one folder at once: never both "succeed" with a mix; a refused one
    # exits 2 (the lock's ConfigError)
    for c in result["concurrent"]:
        assert c["state"] != "mix" and all(rc in (0, 2) for rc in c["rcs"]), (
            c, result["child_tracebacks"])
        assert 0 in c["rcs"], c
        winner = c["rcs"].index(0) if c["rcs"].count(0) == 1 else None
        if winner is not None:
            assert c["state"] == f"net{winner}", c


@pytest.mark.slow
def test_kill9_during_train_snapshots_then_resume_is_bit_identical(
        tmp_path: pathlib.Path) -> None:
    golden = GOLDEN / "solver" / "sgd_step_lrmult"
    case = tmp_path / "case"
    case.mkdir()
    for name in ("train.prototxt", "train.h5", "train_h5_list.txt", "init.caffemodel"):
        shutil.copy(golden / name, case / name)
    solver = (golden / "solver.prototxt").read_text()
    assert "snapshot: 0" in solver
    (case / "solver.prototxt").write_text(solver.replace("snapshot: 0", "snapshot: 2"))
    result = _drive("train", tmp_path, {"seed": 15, "trials": TRIALS, "case": str(case),
                                        "max_iter": 6})
    assert result["sets"] == [2, 4, 6]
    trials = result["trials"]
    assert len(trials) == TRIALS and all(t["rc"] == -9 for t in trials), trials
    bad = [t for t in trials
           if any(v not in ("complete", "incomplete") for v in t["sets"].values())
           or t["rerun_rc"] != 0 or not t["identical"]]
    assert not bad, json.dumps(bad, indent=1)
    # the kills left sets of every kind: none yet, incomplete, complete
    assert any(not t["sets"] for t in trials)
    assert any("complete" in t["sets"].values() for t in trials)
