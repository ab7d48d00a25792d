"""kill -9 driver for tests/test_kill9.py (run as a script; prints one JSON line).

It imports modelport once, then forks one child per trial that runs `modelport convert` or
`modelport train` through `modelport.cli.main` (the code behind the command line) and SIGKILLs
itself just before its k-th filesystem step inside the test folder (a rename, link, unlink,
mkdir, rmdir or fsync): every point where what is on disk changes. Forking keeps a trial at a
fraction of a second instead of paying torch's import for each one; the killed child is a real
process killed by a real SIGKILL, so the disk holds exactly what such a kill leaves.

Usage: python crash_driver.py convert|train ROOT SPEC.json
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch

from modelport.cli import main

torch.set_num_threads(1)  # the same thread count in every child: bit-identical training

_WRAPPED = ("replace", "rename", "link", "symlink", "unlink", "remove", "rmdir", "mkdir",
            "fsync")


def _kill_switch(root: str, k: int, counter: list[int]) -> None:
    """Count the filesystem steps under `root`; SIGKILL this process before step `k`."""
    real = os.path.realpath(root)

    def inside(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if "dir_fd" in kwargs or "src_dir_fd" in kwargs:
            return True  # shutil.rmtree's relative steps (only ever in the test folder)
        if not args:
            return False
        if isinstance(args[0], int):
            return True  # fsync of a file descriptor
        path = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(args[0]))))
        return path == real or path.startswith(real + os.sep)

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            if inside(args, kwargs):
                counter[0] += 1
                if counter[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        step.__name__ = name
        return step

    for name in _WRAPPED:
        setattr(os, name, wrap(name, getattr(os, name)))


def run(argv: list[str], root: str, k: int = 0, cwd: str | None = None) -> tuple[int, int]:
    """Fork a child running `modelport *argv` killed before step k (0: never).
    Returns (exit code or -signal, steps counted)."""
    return finish(*start(argv, root, k, cwd))


def start(argv: list[str], root: str, k: int = 0, cwd: str | None = None) -> tuple[int, int]:
    """Fork the child of `run` and return (pid, read end of its pipe) at once."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        counter = [0]
        rc = 99
        try:
            if cwd:
                os.chdir(cwd)
            _kill_switch(root, k, counter)
            rc = main(argv)
        except SystemExit as exc:
            rc = int(exc.code or 0)
        except BaseException:
            traceback.print_exc()
            # kept for the test's failure message (the driver's stderr is not shown on success)
            with open(os.path.join(root, f"child-{os.getpid()}.traceback"), "w") as fh:
                traceback.print_exc(file=fh)
        os.write(write, str(counter[0]).encode())
        os._exit(rc)
    os.close(write)
    return pid, read


def finish(pid: int, read: int) -> tuple[int, int]:
    """Wait for a child of `start`: (exit code or -signal, steps counted)."""
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        steps = int(fh.read() or -1)
    return os.waitstatus_to_exitcode(status), steps


def digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def visible_state(folder: str) -> dict[str, str]:
    """What a user of the folder sees: every non-hidden name -> sha256 of its content
    (through links; a dangling link is no file)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        out[name] = digest(path)
    return out


def disk_bytes(folder: str) -> int:
    """Bytes of all regular files under folder (hidden ones included, links not followed)."""
    seen, total = set(), 0
    for base, _dirs, files in os.walk(folder):
        for f in files:
            st = os.lstat(os.path.join(base, f))
            if os.path.islink(os.path.join(base, f)) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def load_check(folder: str) -> str:
    """load() of folder/model.py in a child: 'ok:<sha of the loaded state>' or 'error:<msg>'."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            from modelport.convert import load_generated

            net = load_generated(os.path.join(folder, "model.py")).load()
            h = hashlib.sha256()
            for key, value in sorted(net.state_dict().items()):
                h.update(key.encode())
                h.update(value.detach().contiguous().numpy().tobytes())
            msg = "ok:" + h.hexdigest()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            msg = f"error:{type(exc).__name__}: {exc}"
        os.write(write, msg.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        return fh.read()


def copy_folder(src: str, dst: str, flat: bool = False) -> None:
    """A copy of a conversion folder: as written (links kept), or `flat` (regular files only,
    hidden entries dropped: the layout of folders written by earlier modelport versions)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    if not flat:
        shutil.copytree(src, dst, symlinks=True)
        return
    os.makedirs(dst)
    for name in os.listdir(src):
        if not name.startswith(".") and os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def convert_trials(root: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Old conversion in out/, then a new one killed at random steps; each folder after the
    kill must be the old or the new conversion, and the next convert must succeed cleanly."""
    rng = random.Random(spec["seed"])
    nets = spec["nets"]  # two [prototxt, caffemodel, mean-or-null]

    def argv(net: list[Any], out: str) -> list[str]:
        a = ["convert", net[0], net[1], "-o", out]
        return a + (["--mean", net[2]] if net[2] else [])

    # warm up in this process (lazy imports, first calls) so that every child starts hot; one
    # torch thread, so no OpenMP team exists when forking
    warm = os.path.join(root, "warmup")
    assert main(argv(nets[0], warm)) == 0
    from modelport.convert import load_generated

    load_generated(os.path.join(warm, "model.py")).load()
    shutil.rmtree(warm)
    refs, states, loads = [], [], []
    for i, net in enumerate(nets):
        ref = os.path.join(root, f"ref{i}")
        rc, _ = run(argv(net, ref), root)
        assert rc == 0, f"reference convert failed: {rc}"
        with open(os.path.join(ref, "notes.txt"), "w") as fh:
            fh.write("the user's own file")
        refs.append(ref)
        states.append(visible_state(ref))
        loads.append(load_check(ref))
    # Four kinds of trial: old = net 0 or net 1, as written by this version (links) or as plain
    # files (earlier versions). The steps of an uninterrupted convert of each kind are counted
    # first; each kind's kill points are its steps in random order (all of them are used
    # before any repeats).
    out = os.path.join(root, "out")
    kinds = [(old, flat) for flat in (False, True) for old in (0, 1)]
    steps, points = {}, {}
    for kind in kinds:
        copy_folder(refs[kind[0]], out, flat=kind[1])
        rc, steps[kind] = run(argv(nets[1 - kind[0]], out), root)
        assert rc == 0
        points[kind] = []
    trials = []
    for t in range(spec["trials"]):
        kind = kinds[t % len(kinds)]
        old, flat = kind
        new = 1 - old
        if not points[kind]:
            points[kind] = list(range(1, steps[kind] + 1))
            rng.shuffle(points[kind])
        k = points[kind].pop()
        copy_folder(refs[old], out, flat=flat)
        rc, _ = run(argv(nets[new], out), root, k)
        seen = visible_state(out)
        state = ("old" if seen == states[old] else "new" if seen == states[new] else
                 f"mix: {sorted(seen.items())}")
        loaded = load_check(out)
        load_state = ("old" if loaded == loads[old] else "new" if loaded == loads[new] else
                      loaded)
        # the next convert into the folder works, and leaves no stale staging behind
        rc2, _ = run(argv(nets[new], out), root)
        after = visible_state(out)
        trials.append({"k": k, "steps": steps[kind], "rc": rc, "flat": flat, "state": state,
                       "load": load_state, "next_rc": rc2, "next_is_new": after == states[new],
                       "bytes": disk_bytes(out), "ref_bytes": disk_bytes(refs[new])})
    # two converts into one folder at the same time (no kill): one may be refused (exit 2),
    # the folder is one whole conversion
    concurrent = []
    for _ in range(spec.get("concurrent", 0)):
        copy_folder(refs[0], out)
        children = [start(argv(nets[0], out), root), start(argv(nets[1], out), root)]
        rcs = [finish(*c)[0] for c in children]
        seen = visible_state(out)
        concurrent.append({"rcs": rcs, "state": next((f"net{i}" for i in (0, 1)
                                                      if seen == states[i]), "mix")})
    return {"steps": min(steps.values()), "trials": trials, "concurrent": concurrent}


def main_driver() -> None:
    mode, root, spec_path = sys.argv[1:4]
    with open(spec_path) as fh:
        spec = json.load(fh)
    result = convert_trials(root, spec) if mode == "convert" else train_trials(root, spec)
    print(json.dumps(result))


def train_trials(root: str, spec: dict[str, Any]) -> dict[str, Any]:
    """`modelport train ... --resume auto` (snapshots every 2 iterations) killed at random
    steps, then the same command again: every snapshot set on disk is complete and equal to
    the uninterrupted run's, or incomplete and refused; the rerun ends bit-identical."""
    from modelport.train.snapshot import check_snapshot_set, snapshot_sets

    rng = random.Random(spec["seed"])
    case = spec["case"]  # a folder with solver.prototxt, its net, data and init.caffemodel
    argv = ["train", "solver.prototxt", "--weights", "init.caffemodel", "--resume", "auto",
            "--max-iter", str(spec["max_iter"]), "--no-progress", "--quiet"]

    def fresh(name: str) -> str:
        folder = os.path.join(root, name)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        shutil.copytree(case, folder)
        return folder

    def set_files(folder: str, n: int) -> dict[str, str]:
        names = [f"snap_iter_{n}{ext}" for ext in (".caffemodel", ".solverstate",
                                                   ".safetensors", ".feedstate.json")]
        return {x: digest(os.path.join(folder, x)) for x in names
                if os.path.exists(os.path.join(folder, x))}

    warm = fresh("warmup")  # imports and first calls in this process (one torch thread)
    cwd = os.getcwd()
    os.chdir(warm)
    try:
        assert main(argv) == 0
    finally:
        os.chdir(cwd)
    ref = fresh("ref")
    rc, steps = run(argv, root, cwd=ref)
    assert rc == 0
    reference = {n: set_files(ref, n) for n, _ in snapshot_sets(os.path.join(ref, "snap"))}
    points: list[int] = []
    trials = []
    for _t in range(spec["trials"]):
        if not points:
            points = list(range(1, steps + 1))
            rng.shuffle(points)
        k = points.pop()
        folder = fresh("run")
        rc, _ = run(argv, root, k, cwd=folder)
        sets = {}
        for n, state in snapshot_sets(os.path.join(folder, "snap")):
            problem = check_snapshot_set(state)
            if problem is None:
                sets[n] = "complete" if set_files(folder, n) == reference[n] else "WRONG"
            else:
                sets[n] = "incomplete"
        rc2, _ = run(argv, root, cwd=folder)
        final = max(reference)
        trials.append({"k": k, "steps": steps, "rc": rc, "sets": sets, "rerun_rc": rc2,
                       "identical": set_files(folder, final) == reference[final]})
    return {"steps": steps, "sets": sorted(reference), "trials": trials}


if __name__ == "__main__":
    main_driver()
