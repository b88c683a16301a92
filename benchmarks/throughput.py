"""Coalition evaluations per second: batched game vs one coalition per generate call, side by side.

    python benchmarks/throughput.py [--coalitions 32] [--batch-size 16] [--threads 2] [--rows 2]

Same model (the embedded SmolLM2), same row, same coalitions, same generation settings; the two
variants alternate (sequential, batched, batched, sequential) so machine noise hits both. Then a short
mc_minimal run measures the runner overhead: wall time outside model calls / time inside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import torch
from hydra import compose, initialize_config_dir

import mllm_shapx.app  # noqa: F401  (registers the schema and resolvers)
from mllm_shapx.artifacts import read_json
from mllm_shapx.config import CONF_DIR
from mllm_shapx.connectors.hf_text import load_text_model
from mllm_shapx.data import get_row, load_split, select_rows
from mllm_shapx.explain import chat_for
from mllm_shapx.game import ChatGame
from mllm_shapx.run import run
from mllm_shapx.similarity import make_scorer


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["+experiment=mc_minimal", *overrides])


def time_game(model, chat, cfg, coalitions, batch_size):
    game = ChatGame(model, chat, make_scorer(cfg.shap), max_new_tokens=cfg.generation.max_new_tokens,
                    batch_size=batch_size)
    start = time.perf_counter()
    values = game.values(coalitions)
    return time.perf_counter() - start, values


def throughput(args):
    cfg = compose_cfg()
    model = load_text_model(cfg.connector.model)
    dataset = load_split(cfg.dataset)
    index = select_rows(dataset, cfg.selection, lambda r: chat_for(r, model, cfg).n_players)[0]
    chat = chat_for(get_row(dataset, index), model, cfg)
    rng = np.random.default_rng(0)
    coalitions = rng.random((args.coalitions, chat.n_players)) < 0.5
    model.generate([chat.input_ids], max_new_tokens=2)  # warm-up
    timings = {"sequential": [], "batched": []}
    answers = {}
    for variant in ("sequential", "batched", "batched", "sequential"):
        seconds, answers[variant] = time_game(model, chat, cfg, coalitions,
                                              1 if variant == "sequential" else args.batch_size)
        timings[variant].append(seconds)
    seq = args.coalitions / np.mean(timings["sequential"])
    bat = args.coalitions / np.mean(timings["batched"])
    same = int(np.sum(np.isclose(answers["sequential"], answers["batched"])))
    print(f"row {index}: {chat.n_players} players, {args.coalitions} coalitions, "
          f"max_new_tokens={cfg.generation.max_new_tokens}, threads={torch.get_num_threads()}")
    print(f"sequential (batch 1):       {seq:7.2f} coalitions/s  ({timings['sequential']} s)")
    print(f"batched (batch {args.batch_size:>3}):       {bat:7.2f} coalitions/s  ({timings['batched']} s)")
    print(f"speed-up batched/sequential: {bat / seq:.2f}x   (identical values: {same}/{args.coalitions})")


def overhead(args):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(f"output_root={tmp}", f"selection.max_samples={args.rows}", "runtime.progress_bar=false")
        load_text_model(cfg.connector.model)  # loading is a one-off per process, not runner overhead
        out = Path(tmp) / "run"
        start = time.perf_counter()
        run(cfg, out)
        wall = time.perf_counter() - start
        samples = [read_json(p) for p in sorted((out / "samples").glob("*.json"))]
    model_s = sum(s["model_time_sec"] for s in samples)
    print(f"mc_minimal, {len(samples)} rows: wall {wall:.2f} s, inside model calls {model_s:.2f} s, "
          f"outside {wall - model_s:.2f} s -> overhead {100 * (wall - model_s) / model_s:.2f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coalitions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    throughput(args)
    overhead(args)


if __name__ == "__main__":
    main()
