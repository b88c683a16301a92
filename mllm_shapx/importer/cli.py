"""The command line, ``python -m mllm_shapx.importer`` (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .compose import check
from .legacy import _print_warnings, load_all
from .original import CONF_DIR
from .writer import commands, write


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mllm_shapx.importer",
        description="Import the original runner's JSON experiment configs as Hydra experiment presets and print "
                    "the commands that run them.")
    parser.add_argument("configs", nargs="+", metavar="CONFIG.json")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", type=Path,
                       help="write DIR/experiment/<name>.yaml (commands then carry --config-dir DIR)")
    where.add_argument("--install", action="store_true", help="write conf/experiment/<name>.yaml (+experiment=<name>)")
    where.add_argument("--check", action="store_true",
                       help="import into a temporary directory, compose every planned run and print the run count")
    parser.add_argument("--list", action="store_true", help="with --check: print every planned run directory")
    args = parser.parse_args(argv)
    if args.list and not args.check:
        parser.error("--list goes with --check")

    imports, failed = load_all(args.configs)
    if failed:
        print("error: nothing written", file=sys.stderr)
        return 2
    if args.check:
        return check(imports, list_runs=args.list)
    if args.install:
        if not CONF_DIR.is_dir():
            print(f"error: no conf/ directory at {CONF_DIR} (not a checkout): use --out DIR", file=sys.stderr)
            return 2
        experiment_dir, config_dir = CONF_DIR / "experiment", None
    else:
        config_dir = args.out.resolve()
        experiment_dir = config_dir / "experiment"
    write(imports, experiment_dir, config_dir)
    for imp in imports:
        _print_warnings(imp)
        for line in commands(imp, config_dir):
            print(line)
    return 0
