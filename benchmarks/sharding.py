"""Wall time of one run on 1 vs 2 shards through Slurm, and the cost of merging shards.

    python benchmarks/sharding.py [--model smollm2|tiny] [--rows 6] [--num-samples 20] [--cores 2] [--repeats 2]

Needs a running Slurm (e.g. ``bash launchers/slurm_local.sh up``: one node, 2 cores here). The same
run (mc_minimal, ``--rows`` rows, ``--num-samples`` model calls per row) goes through
``+launcher=slurm`` in two ways, each into a fresh output root:

* 1 shard: one job with all ``--cores`` CPUs (``cpus_per_task`` = ``runtime.num_threads`` = cores);
* 2 shards: ``shard.index=range(0,2) shard.count=2``, a job array of two tasks with cores/2 CPUs each.

Wall time is the driver's, from the command to its return (Slurm scheduling, Python start-up and
the model load of each job included; the best of ``--repeats`` runs, taken in alternating order, is
compared); "compute" is the span of the jobs' own status files (first start to last update). The
two results must be identical (same samples, same attributions).

Merge overhead: the shards share no merge step at the end; after each row a shard rebuilds
checkpoint.json (and at its end summary/aggregate_metrics.json) from the sample files on disk under a
short directory lock. That rebuild is timed on the finished run directory and reported per update
and in total (one per row, plus one summary per shard) as a share of the sharded wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TIMING_KEYS = {"runtime_sec", "model_time_sec"}


def model_overrides(model: str, work: Path) -> list:
    if model == "smollm2":
        return []  # the experiment's own connector: the embedded SmolLM2-135M-Instruct
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tiny_chat_model

    return ["connector=hf_text", f"connector.model={build_tiny_chat_model(work / 'tiny_model')}",
            "selection.min_prompt_tokens=3", "selection.max_prompt_tokens=12"]


def run(args, output_root: Path, extra: list, multirun_args: list) -> float:
    command = [sys.executable, "-m", "mllm_shapx.app", "--multirun", "+experiment=mc_minimal", "+launcher=slurm",
               f"output_root={output_root}", f"selection.max_samples={args.rows}",
               f"shap.num_samples={args.num_samples}", "runtime.progress_bar=false",
               "hydra.launcher.timeout_min=60", *extra, *multirun_args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return wall


def run_dir_of(output_root: Path) -> Path:
    (run_dir,) = [p for p in (output_root / "testing_and_experiments").iterdir()
                  if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def compute_span(run_dir: Path) -> float:
    statuses = [json.loads(p.read_text()) for p in (run_dir / "status").glob("*.json")]
    return max(s["updated_at"] for s in statuses) - min(s["started_at"] for s in statuses)


def same_results(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in (a / "samples").iterdir())
    if names != sorted(p.name for p in (b / "samples").iterdir()):
        return False

    def strip(path):
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING_KEYS}

    return all(strip(a / "samples" / n) == strip(b / "samples" / n) for n in names)


def merge_cost(run_dir: Path, repeats: int = 20) -> tuple:
    """Seconds for one checkpoint rebuild and one summary rebuild under the directory lock."""
    sys.path.insert(0, str(REPO))
    from mllm_shapx.artifacts import RunDir

    selected = json.loads((run_dir / "checkpoint.json").read_text())["completed_indices"]
    scratch = Path(tempfile.mkdtemp(prefix="merge_")) / run_dir.name
    shutil.copytree(run_dir, scratch, ignore=shutil.ignore_patterns(".*.lock"))
    directory = RunDir(scratch)
    timings = {"checkpoint": [], "summary": []}
    for _ in range(repeats):
        for kind, write in (("checkpoint", directory.write_checkpoint), ("summary", directory.write_summary)):
            start = time.perf_counter()
            with directory.shared:
                write(selected)
            timings[kind].append(time.perf_counter() - start)
    shutil.rmtree(scratch.parent)
    return min(timings["checkpoint"]), min(timings["summary"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--num-samples", type=int, default=20)
    parser.add_argument("--cores", type=int, default=2, help="CPUs of the node to use (split over the shards)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, in alternating order")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("no Slurm here: bash launchers/slurm_local.sh up")
    work = Path(tempfile.mkdtemp(prefix="sharding_bench_"))
    extra = model_overrides(args.model, work)
    half = max(1, args.cores // 2)
    print(f"model {args.model}, {args.rows} rows x {args.num_samples} calls, {args.cores} cores; Slurm "
          f"{subprocess.run(['sinfo', '--version'], capture_output=True, text=True).stdout.strip()}")

    one_shard = [f"hydra.launcher.cpus_per_task={args.cores}", f"runtime.num_threads={args.cores}"]
    two_shards = [f"hydra.launcher.cpus_per_task={half}", f"runtime.num_threads={half}", "shard.index=range(0,2)",
                  "shard.count=2"]
    walls = {1: [], 2: []}
    spans = {1: [], 2: []}
    for repeat in range(args.repeats):  # alternate the order (1 2, 2 1, ...): slow phases of the machine hit both
        for shards in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            root = work / f"{shards}_{repeat}"
            walls[shards].append(run(args, root, extra, one_shard if shards == 1 else two_shards))
            spans[shards].append(compute_span(run_dir_of(root)))
    one, two = run_dir_of(work / "1_0"), run_dir_of(work / "2_0")
    identical = same_results(one, two)
    checkpoint_s, summary_s = merge_cost(two)
    wall_1, wall_2 = min(walls[1]), min(walls[2])
    merge_total = args.rows * checkpoint_s + 2 * (checkpoint_s + summary_s)

    def fmt(values):
        return " ".join(f"{v:6.1f}" for v in values)

    print(f"1 shard  ({args.cores} threads)   wall s: {fmt(walls[1])}   compute s: {fmt(spans[1])}")
    print(f"2 shards ({half} thread{'s' if half > 1 else ''} each) wall s: {fmt(walls[2])}   "
          f"compute s: {fmt(spans[2])}")
    print(f"ratio wall(2 shards) / wall(1 shard) = {wall_2 / wall_1:.2f} (best of {args.repeats}; "
          f"speed-up {wall_1 / wall_2:.2f}x)")
    print(f"merge: checkpoint rebuild {checkpoint_s * 1e3:.2f} ms, summary rebuild {summary_s * 1e3:.2f} ms "
          f"({args.rows} rows); total per sharded run {merge_total * 1e3:.1f} ms "
          f"= {100 * merge_total / wall_2:.3f}% of its wall time")
    print(f"results identical (samples, attributions): {identical}")
    shutil.rmtree(work)
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
