"""`make fuzz`: fuzz every reader (Caffe; TF checkpoint, object graph; Keras .h5, .keras) with
>= 100k inputs and report, per reader, the inputs run, exceptions outside ModelportError, runs
over 5 s and the peak memory ratio.

Each reader runs in its own worker process (this file with --worker), so a segfault, an
out-of-memory kill or a hang costs one worker, not the run: the parent keeps the input that
killed it (the worker writes every input to a file before reading it) and starts a new worker
for the remaining budget. In a worker every input runs in-process, timed (wall and CPU) and
with tracemalloc's peak reset; a watchdog (faulthandler) ends a worker stuck on one input for
more than --hang seconds, and its address space is capped so a runaway allocation becomes a
MemoryError instead of swapping the machine.

Engines: `atheris` (libFuzzer coverage feedback over modelport's instrumented readers, with the
structure-aware mutators of tests/fuzz/fuzz_support.py as its custom mutator) when atheris is
installed, else `mutate` (the same mutators, seeded, without coverage feedback).

    python tools/fuzz.py [--runs 120000] [--readers caffemodel_v2,prototxt] [--engine auto]
                         [--seed 1] [--out build/fuzz]

Crashing inputs are written to <out>/crashers/<reader>/; copy the small ones to
tests/fuzz/corpus/<reader>/ with the fix, where tests/fuzz/test_fuzz_regressions.py replays them.
The exit status is 1 when any reader had a crash, a run over the time limit or a memory-bound
violation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

ADDRESS_SPACE_HEADROOM = 3 << 30  # bytes a worker may map beyond what its imports took
STATS_EVERY = 100
RSS_SLACK = 32 << 20  # a jump of the process's peak RSS beyond 16 x the input + this is a bug
# How --runs is shared between the readers, by their speed (CPU per input: binary readers
# ~5 ms, prototxt ~50 ms, under tracemalloc): 120k inputs take ~25 CPU-minutes.
SHARES = {"caffemodel_v2": 3, "caffemodel_v1": 3, "binaryproto": 3, "solverstate": 2,
          "solver": 1, "prototxt": 1,
          # TF / Keras (~5 ms per checkpoint, ~3 ms per object graph, ~10-20 ms per h5py read)
          "tf_checkpoint": 2, "tf_object_graph": 2, "keras_h5": 1, "keras_archive": 1}


def _fresh_stats(reader: str) -> dict[str, Any]:
    return {"reader": reader, "inputs": 0, "ok": 0, "modelport_error": 0, "crash": 0,
            "known_open": 0, "over_time_wall": 0, "over_time_cpu": 0, "over_memory": 0,
            "max_wall_s": 0.0, "max_cpu_s": 0.0, "max_peak_bytes": 0,
            "max_ratio_16k": 0.0, "max_ratio_any": 0.0, "signatures": {}, "engine": "",
            "worker_deaths": 0, "max_rss_kb": 0}


# ---------------------------------------------------------------------------------------------
# worker

class Worker:
    """Runs inputs of one reader, keeps the statistics and the crashing inputs."""

    def __init__(self, reader: str, stats_path: str, crash_dir: str, workdir: str,
                 time_limit: float, hang: float) -> None:
        import fuzz_support as fs

        self.fs = fs
        self.target = fs.TARGETS[reader]
        self.stats_path = stats_path
        self.crash_dir = crash_dir
        self.workdir = workdir
        self.time_limit = time_limit
        self.hang = hang
        self.watchdog = True  # atheris has its own (-timeout), on the same faulthandler timer
        self.stats = _fresh_stats(reader)
        self.target.warm(workdir)
        self.target.seeds  # noqa: B018 - loads the golden seeds before measuring starts
        import tracemalloc

        tracemalloc.start()

    def one(self, data: bytes) -> None:
        import faulthandler
        import resource

        fs = self.fs
        if self.watchdog:
            faulthandler.dump_traceback_later(self.hang, exit=True)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu0 = time.process_time()
        outcome = fs.run_one(self.target, data, self.workdir)
        cpu = time.process_time() - cpu0
        # tracemalloc sees Python objects and numpy, not protobuf's C arena: the process's
        # high-water mark (ru_maxrss, KB) must not jump by more than the bound either.
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
        if self.watchdog:
            faulthandler.cancel_dump_traceback_later()
        s = self.stats
        s["inputs"] += 1
        if outcome.kind == "ok":
            s["ok"] += 1
        elif outcome.kind == "error":
            s["modelport_error"] += 1
        else:
            s["crash"] += 1
            sig = fs.crash_signature(outcome)
            item = fs.known_open(self.target.name, outcome)
            if item:
                s["known_open"] += 1
                sig += f" [known open: {item}]"
            self._keep(data, sig)
        if outcome.seconds > self.time_limit:
            s["over_time_wall"] += 1
        if cpu > self.time_limit:
            s["over_time_cpu"] += 1
            self._keep(data, f"over {self.time_limit} s CPU")
        if not outcome.memory_ok:
            s["over_memory"] += 1
            self._keep(data, "over the memory bound")
        if grew > fs.MEMORY_RATIO * outcome.size + RSS_SLACK:
            s["over_memory"] += 1
            s["over_rss"] = s.get("over_rss", 0) + 1
            self._keep(data, f"peak RSS grew {grew >> 20} MB")
        s["max_rss_jump"] = max(s.get("max_rss_jump", 0), grew)
        s["max_wall_s"] = max(s["max_wall_s"], outcome.seconds)
        s["max_cpu_s"] = max(s["max_cpu_s"], cpu)
        s["max_peak_bytes"] = max(s["max_peak_bytes"], outcome.peak)
        ratio = outcome.peak / max(1, outcome.size)
        s["max_ratio_any"] = max(s["max_ratio_any"], ratio)
        if outcome.size >= 16 << 10:
            s["max_ratio_16k"] = max(s["max_ratio_16k"], ratio)
        s["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if s["inputs"] % STATS_EVERY == 0:
            self.flush()

    def _keep(self, data: bytes, signature: str) -> None:
        sigs = self.stats["signatures"]
        sigs[signature] = sigs.get(signature, 0) + 1
        if sigs[signature] > 3:
            return
        folder = os.path.join(self.crash_dir, self.target.name)
        os.makedirs(folder, exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:12]
        with open(os.path.join(folder, digest + self.target.suffix), "wb") as fh:
            fh.write(data)
        with open(os.path.join(folder, digest + ".txt"), "w") as fh:
            fh.write(signature + "\n")

    def flush(self) -> None:
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.stats, fh)
        os.replace(tmp, self.stats_path)


def _cap_address_space() -> None:
    import resource

    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_worker(args: argparse.Namespace) -> int:
    engine = args.engine
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["modelport"]):
            import modelport.formats.caffe.blobproto
            import modelport.formats.caffe.caffemodel
            import modelport.formats.caffe.inputs
            import modelport.formats.caffe.net_loader
            import modelport.formats.caffe.prototxt
            import modelport.formats.caffe.upgrade
            import modelport.formats.caffe.wire
            import modelport.formats.tf.checkpoint
            import modelport.formats.tf.h5_heaps
            import modelport.formats.tf.h5_order
            import modelport.formats.tf.keras_archive
            import modelport.formats.tf.keras_h5
            import modelport.formats.tf.object_graph
            import modelport.formats.tf.open
            import modelport.formats.tf.sstable
            import modelport.passes.phase_filter
            import modelport.passes.shared_params
            import modelport.pipeline
            import modelport.train.lr_policy
            import modelport.train.snapshot  # noqa: F401
    import fuzz_support as fs

    fs.MAX_INPUT = args.max_len
    fs.TARGETS[args.worker].max_len = min(args.max_len, fs.TARGETS[args.worker].max_len)
    worker = Worker(args.worker, args.stats, args.crashes, args.workdir, args.time_limit,
                    args.hang)
    worker.stats["engine"] = engine
    prior = json.loads(pathlib.Path(args.stats).read_text()) if os.path.exists(args.stats) \
        else None
    if prior:  # a restarted worker continues the dead one's counts
        worker.stats.update(prior)
    _cap_address_space()
    if engine == "atheris":
        return _run_atheris(worker, args)
    rng = random.Random(args.seed)
    while worker.stats["inputs"] < args.runs:
        worker.one(worker.target.generate(rng))
    worker.flush()
    return 0


def _run_atheris(worker: Worker, args: argparse.Namespace) -> int:
    import atheris

    target = worker.target
    worker.watchdog = False
    corpus = tempfile.mkdtemp(prefix="corpus-", dir=args.workdir)
    for i, seed in enumerate(target.seeds):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as fh:
            fh.write(seed)
    remaining = args.runs - worker.stats["inputs"]

    def test_one_input(data: bytes) -> None:
        worker.one(bytes(data))
        if worker.stats["inputs"] >= args.runs:
            worker.flush()
            os._exit(0)  # libFuzzer's -runs does not count the seed corpus: stop here

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.2:
            return bytes(atheris.Mutate(data, max_size))
        return target.mutate(bytes(data), rng, target.seeds)[:max_size]

    max_len = min(args.max_len, target.max_len)
    atheris.Setup([sys.argv[0], f"-runs={2 * remaining + 10}", f"-max_len={max_len}",
                   f"-seed={args.seed}", "-rss_limit_mb=0", f"-timeout={int(args.hang)}",
                   f"-artifact_prefix={args.workdir}/", "-print_final_stats=0", corpus],
                  test_one_input, custom_mutator=mutator)
    atheris.Fuzz()
    worker.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# parent

def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "mutate"
    return "atheris"


def _supervise(reader: str, runs: int, args: argparse.Namespace, out: pathlib.Path,
               engine: str, workdir: str) -> dict[str, Any]:
    stats_path = out / f"{reader}.stats.json"
    stats_path.unlink(missing_ok=True)
    deaths = 0
    restarts = 0
    while True:
        cmd = [sys.executable, __file__, "--worker", reader, "--runs", str(runs),
               "--seed", str(args.seed * 1000 + restarts), "--engine", engine,
               "--stats", str(stats_path), "--crashes", str(out / "crashers"),
               "--workdir", workdir, "--time-limit", str(args.time_limit),
               "--hang", str(args.hang), "--max-len", str(args.max_len)]
        with open(out / f"{reader}.log", "a") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else \
            _fresh_stats(reader)
        if rc == 0 and stats["inputs"] >= runs:
            stats["worker_deaths"] = deaths
            return stats
        # The worker died on an input (signal, watchdog, libFuzzer abort): keep that input.
        deaths += 1
        restarts += 1
        current = [p for p in pathlib.Path(workdir).glob("input*") if p.is_file()]
        for p in current:
            folder = out / "crashers" / reader
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, folder / f"worker-death-{restarts}{p.suffix}")
            p.unlink()
        stats["crash"] += 1
        stats["inputs"] += 1
        sig = f"worker died (exit status {rc})"
        stats["signatures"][sig] = stats["signatures"].get(sig, 0) + 1
        stats_path.write_text(json.dumps(stats))
        if restarts > 50 or (stats["inputs"] == 0 and restarts > 3):
            stats["worker_deaths"] = deaths
            return stats


def _report(all_stats: list[dict[str, Any]], seconds: float, limit: float) -> str:
    import fuzz_support as fs

    over = f">{limit:g}s"
    head = (f"{'reader':<14} {'engine':<8} {'inputs':>7} {'ok':>6} {'Modelport':>9} "
            f"{'other exc':>9} {over:>5} {'max s':>6} {'mem>bound':>9} "
            f"{'peak/size':>9} {'max peak':>9} {'deaths':>6}")
    lines = [head, "-" * len(head)]
    for s in all_stats:
        lines.append(
            f"{s['reader']:<14} {s['engine']:<8} {s['inputs']:>7} {s['ok']:>6} "
            f"{s['modelport_error']:>9} {s['crash']:>9} {s['over_time_cpu']:>5} "
            f"{s['max_cpu_s']:>6.2f} {s['over_memory']:>9} {s['max_ratio_16k']:>8.1f}x "
            f"{s['max_peak_bytes'] / 2**20:>7.1f}MB {s['worker_deaths']:>6}")
    total = sum(s["inputs"] for s in all_stats)
    lines.append("-" * len(head))
    lines.append(f"{'total':<23} {total:>7} inputs in {seconds:.0f} s; crashes "
                 f"{sum(s['crash'] for s in all_stats)}, over {limit:g} s "
                 f"{sum(s['over_time_cpu'] for s in all_stats)} (CPU; wall "
                 f"{sum(s['over_time_wall'] for s in all_stats)}), over the memory bound "
                 f"{sum(s['over_memory'] for s in all_stats)}")
    lines.append(f"peak/size: the largest tracemalloc peak over input size for inputs of "
                 f">= 16 KB; the bound is {fs.MEMORY_RATIO} x size + "
                 f"{fs.MEMORY_SLACK >> 20} MB for every input.")
    for s in all_stats:
        for sig, n in sorted(s["signatures"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  {s['reader']}: {n} x {sig}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=120_000, help="inputs in total, over all readers")
    p.add_argument("--readers", default="", help="comma-separated subset of the readers")
    p.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "build" / "fuzz"))
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--hang", type=float, default=60.0,
                   help="seconds one input may take before the worker is ended")
    p.add_argument("--max-len", type=int, default=256 << 10)
    p.add_argument("--jobs", type=int, default=2, help="readers fuzzed at the same time")
    p.add_argument("--split", default="",
                   help="reader=share,... : how --runs is shared (default SHARES: the binary "
                        "readers run ~10x faster than the text ones)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    p.add_argument("--crashes", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return run_worker(args)

    import fuzz_support as fs

    readers = [r for r in args.readers.split(",") if r] or list(fs.TARGETS)
    unknown = [r for r in readers if r not in fs.TARGETS]
    if unknown:
        p.error(f"unknown reader(s) {unknown}; known: {', '.join(fs.TARGETS)}")
    engine = _engine(args.engine)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {r: SHARES.get(r, 1) for r in readers}
    for item in filter(None, args.split.split(",")):
        name, _, share = item.partition("=")
        if name not in weights:
            p.error(f"--split names {name!r}, not one of the readers fuzzed")
        weights[name] = float(share)
    total_weight = sum(weights.values())
    budget = {r: max(1, round(args.runs * w / total_weight)) for r, w in weights.items()}
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    start = time.monotonic()

    def one_reader(reader: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix=f"modelport-fuzz-{reader}-", dir=base) as wd:
            t0 = time.monotonic()
            stats = _supervise(reader, budget[reader], args, out, engine, wd)
            print(f"{reader}: {stats['inputs']} inputs, {stats['crash']} crashes, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
            return stats

    print(f"fuzzing {', '.join(f'{r} ({budget[r]})' for r in readers)} inputs, engine "
          f"{engine}, {args.jobs} at a time; logs and crashers in {out}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one_reader, readers))
    report = _report(results, time.monotonic() - start, args.time_limit)
    (out / "report.txt").write_text(report + "\n")
    (out / "report.json").write_text(json.dumps(results, indent=1))
    print(report)
    bad = sum(s["crash"] + s["over_time_cpu"] + s["over_memory"] for s in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
