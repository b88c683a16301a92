"""Record one real LLM game completely: v(S) for all 2**n coalitions of one bundled row.

    python benchmarks/record_llm_game.py [--players 12] [--max-new-tokens 10] [--threads 2]
                                         [--out benchmarks/data/llm_game_12.npz]

The game is the project's own (``ChatGame``: the embedded SmolLM2-135M-Instruct, greedy decoding,
TF-IDF cosine to the full-prompt answer), on the first row of the bundled ``single_sentence`` shard
with exactly ``--players`` explainable tokens. A one-off (about 10-20 minutes on 2 cores); the
estimator benchmark (``benchmarks/estimators.py``) replays the saved table, so estimators can be
compared on a real game at any budget without a model. Saved: ``values`` [2**n] indexed by the
coalition's bit pattern (bit j = player j kept), the players' token texts, the prompt, the row index
and the settings.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pyarrow.parquet as pq
import torch

from mllm_shapx.chat import build_chat
from mllm_shapx.connectors.hf_text import load_text_model
from mllm_shapx.estimators.exact import coalitions_range
from mllm_shapx.game import ChatGame
from mllm_shapx.similarity import TfIdfCosineScorer

REPO = Path(__file__).resolve().parent.parent
SHARD = REPO / "mllm_shapx" / "bundled" / "single_sentence" / "test.parquet"
MODEL = "embedded:SmolLM2-135M-Instruct"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or REPO / "benchmarks" / "data" / f"llm_game_{args.players}.npz"

    model = load_text_model(MODEL)
    prompts = pq.read_table(SHARD, columns=["prompt"]).column("prompt").to_pylist()
    for row_index, prompt in enumerate(prompts):
        chat = build_chat(model.tokenizer, [prompt])
        if chat.n_players == args.players:
            break
    else:
        raise SystemExit(f"no bundled single_sentence row has exactly {args.players} players")
    n = chat.n_players
    tokens = [model.tokenizer.decode([int(chat.input_ids[p])]) for p in chat.players]
    print(f"row {row_index}: {prompt!r}\nplayers: {tokens}", flush=True)

    game = ChatGame(model, chat, TfIdfCosineScorer(), max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size)
    start = time.perf_counter()
    values = np.empty(2**n)
    step = 256
    for lo in range(0, 2**n, step):  # chunks only to show progress; the game batches internally
        values[lo:lo + step] = game.values(coalitions_range(n, lo, min(lo + step, 2**n)))
        print(f"{lo + step}/{2**n} coalitions, {time.perf_counter() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, values=values, n_players=n, row_index=row_index, prompt=prompt,
        player_tokens=np.array(tokens), answer=model.tokenizer.decode(game.full_answer.tolist()),
        model=MODEL, dataset="bundled single_sentence test.parquet", similarity="TfIdfCosineSimilarity",
        max_new_tokens=args.max_new_tokens, temperature=0.0, n_calls=game.n_calls,
        seconds=time.perf_counter() - start,
    )
    print(f"saved {out} ({out.stat().st_size} bytes), {game.n_calls} generations", flush=True)


if __name__ == "__main__":
    main()
