"""Run a list of experiments one after another, retrying failures (replaces the original's run_configs.sh).

    python -m mllm_shapx.batch [--retries N] [--log-dir DIR] [--file LIST] [-- EXPERIMENT ...]

Each EXPERIMENT is one argument: an experiment name plus optional overrides, e.g.
``"mc_minimal shap.num_samples=20"``, run as ``python -m mllm_shapx.app +experiment=mc_minimal
shap.num_samples=20``. An entry whose first word is not a plain name (``--multirun ...``,
``key=value``) is passed to the app as it is. ``--file LIST`` reads one such entry per line
(blank lines and ``#`` comments skipped); entries from the file run before those on the command line.

A failing experiment is retried up to ``--retries`` times (default 2), waiting ``--retry-delay``
seconds between attempts; re-running resumes it, so finished rows are not redone. Exit code 2 (a
configuration error, or a run directory that cannot be used) is final and never retried, and neither
is an interrupt (Ctrl-C stops the batch). Each experiment logs every attempt's output to
``<log-dir>/<NN>_<name>.log``; at the end one summary line per experiment is printed and written to
``<log-dir>/summary.txt``. Exit 0 when every experiment succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

FINAL_EXIT_CODES = {2}  # configuration errors: retrying cannot help (SPEC §8)
_INTERRUPTED = {130, -signal.SIGINT, -signal.SIGTERM, 143}


@dataclass
class Outcome:
    entry: str
    log: Path
    exit_codes: List[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.exit_codes) and self.exit_codes[-1] == 0

    def line(self) -> str:
        n = len(self.exit_codes)
        attempts = f"{n} attempt{'s' if n != 1 else ''}"
        if self.ok:
            verdict = "ok"
        elif self.exit_codes and self.exit_codes[-1] in FINAL_EXIT_CODES:
            verdict = f"FAILED (exit {self.exit_codes[-1]}: configuration error, not retried)"
        elif self.exit_codes and self.exit_codes[-1] in _INTERRUPTED:
            verdict = f"INTERRUPTED (exit {self.exit_codes[-1]})"
        elif not self.exit_codes:
            verdict = "NOT RUN (batch interrupted)"
        else:
            verdict = f"FAILED (exit codes {', '.join(map(str, self.exit_codes))})"
        return f"{verdict:<8}  {self.entry}  [{attempts}, {self.seconds:.0f} s, log {self.log}]"


def app_args(entry: str) -> List[str]:
    """The app's command-line arguments for one entry ("NAME [overrides]" or raw app arguments)."""
    words = shlex.split(entry)
    if words and re.fullmatch(r"[\w./*-]+", words[0]) and not words[0].startswith("-"):
        return [f"+experiment={words[0]}", *words[1:]]
    return words


def read_entries(path: Path) -> List[str]:
    entries = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(line)
    return entries


def _log_name(number: int, entry: str) -> str:
    slug = re.sub(r"[^\w.=-]+", "_", entry).strip("_-")[:80] or "experiment"
    return f"{number:02d}_{slug}.log"


def run_one(command: Sequence[str], log: Path, attempt: int, cwd: Optional[Path]) -> int:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n===== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                     f"{shlex.join(command)}\n")
        handle.flush()
        try:
            code = subprocess.run(list(command), stdout=handle, stderr=subprocess.STDOUT, cwd=cwd).returncode
        except KeyboardInterrupt:
            code = 130
        handle.write(f"===== attempt {attempt} exited with {code} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return code


def run_batch(entries: Sequence[str], *, retries: int, log_dir: Path, app: Sequence[str],
              retry_delay: float = 10.0, cwd: Optional[Path] = None, echo=print) -> List[Outcome]:
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [Outcome(entry, log_dir / _log_name(i + 1, entry)) for i, entry in enumerate(entries)]
    for number, outcome in enumerate(outcomes, 1):
        command = [*app, *app_args(outcome.entry)]
        start = time.monotonic()
        for attempt in range(1, retries + 2):
            echo(f"[{number}/{len(outcomes)}] {outcome.entry}: attempt {attempt} (log {outcome.log})")
            code = run_one(command, outcome.log, attempt, cwd)
            outcome.exit_codes.append(code)
            if code == 0 or code in FINAL_EXIT_CODES or code in _INTERRUPTED:
                break
            if attempt <= retries:
                echo(f"[{number}/{len(outcomes)}] {outcome.entry}: exit {code}, retrying in {retry_delay:g} s")
                time.sleep(retry_delay)
        outcome.seconds = time.monotonic() - start
        echo(f"[{number}/{len(outcomes)}] {outcome.line()}")
        if outcome.exit_codes[-1] in _INTERRUPTED:
            break
    return outcomes


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllm_shapx.batch",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help='"NAME [override ...]", one argument per experiment')
    parser.add_argument("--file", type=Path, help="one experiment per line")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failing experiment (default 2)")
    parser.add_argument("--retry-delay", type=float, default=10.0, help="seconds between attempts (default 10)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="one log per experiment (default batch_logs/<date-time>)")
    parser.add_argument("--app", default=f"{shlex.quote(sys.executable)} -m mllm_shapx.app",
                        help="command that runs one experiment (default: this Python's -m mllm_shapx.app)")
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error("--retries must be >= 0")
    entries = (read_entries(args.file) if args.file else []) + list(args.experiments)
    if not entries:
        parser.error("no experiments given (positional arguments or --file)")
    log_dir = args.log_dir or Path("batch_logs") / time.strftime("%Y%m%d-%H%M%S")
    outcomes = run_batch(entries, retries=args.retries, log_dir=log_dir, app=shlex.split(args.app),
                         retry_delay=args.retry_delay)
    summary = [o.line() for o in outcomes]
    ok = sum(o.ok for o in outcomes)
    summary.append(f"{ok}/{len(outcomes)} experiments succeeded")
    (log_dir / "summary.txt").write_text("\n".join(summary) + "\n", encoding="utf-8")
    print("\n".join(summary))
    return 0 if ok == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
