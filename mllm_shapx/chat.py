"""A row's conversation, rendered with the model's own chat template, with a role per token.

The prompt is the system turn (if any), one user turn per text, and the template's generation prompt.
Players are the user-content tokens that pass the token filter; masking removes them (no replacement
token), so a coalition's prompt is the full prompt minus the unkept players.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .tokens import is_explainable

USER, ASSISTANT, SYSTEM = 0, 1, 2
TEXT, AUDIO = 0, 1


@dataclass(frozen=True)
class Chat:
    input_ids: np.ndarray  # [T] the full prompt, generation prompt included
    roles: np.ndarray  # [T] USER / SYSTEM (template markers and system content count as SYSTEM)
    content_types: np.ndarray  # [T] TEXT / AUDIO
    turn_starts: np.ndarray  # token positions where a turn begins (first is 0)
    players: np.ndarray  # [n] positions in input_ids of the explainable tokens
    texts: List[str]  # the user turns as given

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def player_segments(self) -> np.ndarray:
        """[n] a segment id per player that changes at every turn or modality boundary."""
        turn = np.searchsorted(self.turn_starts, self.players, side="right")
        return turn * 2 + self.content_types[self.players]

    def masked_ids(self, coalition: np.ndarray) -> np.ndarray:
        """The prompt with every player outside the coalition removed."""
        keep = np.ones(len(self.input_ids), dtype=bool)
        keep[self.players[~np.asarray(coalition, dtype=bool)]] = False
        return self.input_ids[keep]


def build_chat(tokenizer, texts: Sequence[str], system_prompt: Optional[str] = None,
               token_filter: str = "exclude_punctuation") -> Chat:
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages += [{"role": "user", "content": text} for text in texts]
    rendered, spans = _render_with_spans(tokenizer, messages)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    offsets = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)

    in_user = np.zeros(len(ids), dtype=bool)
    for message, (start, end) in zip(messages, spans):
        if message["role"] == "user":
            in_user |= (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0])

    roles = np.where(in_user, USER, SYSTEM).astype(np.int64)
    user_positions = np.flatnonzero(in_user)
    players = np.asarray(
        [p for p in user_positions if is_explainable(tokenizer.decode([int(ids[p])]), token_filter)],
        dtype=np.int64,
    )
    return Chat(
        input_ids=ids,
        roles=roles,
        content_types=np.full(len(ids), TEXT, dtype=np.int64),
        turn_starts=_turn_starts(ids, tokenizer),
        players=players,
        texts=list(texts),
    )


_PLACEHOLDER = "MLLMSHAPXTURN{}X"


def _render_with_spans(tokenizer, messages):
    """The rendered prompt and the character span of each message's content in it.

    Rendered once with a unique placeholder per content, so a content is never confused with template
    text (role names, an injected default system prompt) that happens to contain the same words.
    """
    marked = [{**m, "content": _PLACEHOLDER.format(i)} for i, m in enumerate(messages)]
    template = tokenizer.apply_chat_template(marked, add_generation_prompt=True, tokenize=False)
    pieces, spans, cursor, length = [], [], 0, 0
    for i, message in enumerate(messages):
        marker = _PLACEHOLDER.format(i)
        at = template.find(marker, cursor)
        if at < 0 or template.count(marker) != 1:
            raise ValueError(f"the chat template altered a {message['role']} turn; cannot locate its tokens")
        pieces.append(template[cursor:at])
        length += at - cursor
        spans.append((length, length + len(message["content"])))
        pieces.append(message["content"])
        length += len(message["content"])
        cursor = at + len(marker)
    pieces.append(template[cursor:])
    rendered = "".join(pieces)
    if rendered != tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False):
        raise ValueError("the chat template rewrites turn contents; cannot locate the user's tokens")
    return rendered, spans


def _turn_starts(ids: np.ndarray, tokenizer) -> np.ndarray:
    """Turns begin at each occurrence of the template's opening special token (ChatML's <|im_start|>).

    Used for the per-turn layout of the sample file only; a template without such a marker is shown
    as one turn.
    """
    first = int(ids[0]) if len(ids) else -1
    if first not in set(tokenizer.all_special_ids):
        return np.asarray([0], dtype=np.int64)
    return np.flatnonzero(ids == first).astype(np.int64)
