"""A row's conversation, rendered with the model's own chat template, with a role per token.

The prompt is the system turn (if any), one user turn per sentence, and the template's generation
prompt. Players are the user-content text tokens that pass the token filter and, with an audio
connector, the segments of the user's audio clips; masking removes them (no replacement token, no
silence), so a coalition's prompt is the full prompt minus the unkept players.

Which user turns are text and which are speech is the input modality: ``text``; ``audio__<voice>``
(every sentence spoken); ``interleaved__<first>_first__<voice>`` (sentences alternate text and
speech, starting with ``first``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .tokens import explainable_positions

USER, ASSISTANT, SYSTEM = 0, 1, 2
TEXT, AUDIO = 0, 1


@dataclass(frozen=True)
class Chat:
    input_ids: np.ndarray  # [T] the full prompt, generation prompt included
    roles: np.ndarray  # [T] USER / SYSTEM (template markers and system content count as SYSTEM)
    content_types: np.ndarray  # [T] TEXT / AUDIO
    turn_starts: np.ndarray  # token positions where a turn begins (first is 0)
    players: np.ndarray  # [n] positions in input_ids of the explainable tokens (first token of a segment)
    texts: List[str]  # the user turns as given
    prompt: Any = None  # audio chats: the connector's AudioPrompt (labels, clips, segments)
    player_clip: Optional[np.ndarray] = None  # [n] audio chats: clip of each player, -1 for text
    player_segment: Optional[np.ndarray] = None  # [n] audio chats: segment in its clip, -1 for text
    token_samples: int = 0  # audio chats: samples per audio token (640 = 40 ms at 16 kHz for Qwen2-Audio)

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def full_prompt(self):
        """What the connector generates from for the grand coalition."""
        return self.input_ids if self.prompt is None else self.prompt

    def masked(self, coalition: np.ndarray):
        """The connector's input for a coalition: token ids (text chats) or an ``EncodedPrompt``."""
        if self.prompt is None:
            return self.masked_ids(coalition)
        coalition = np.asarray(coalition, dtype=bool)
        text = self.player_clip < 0
        clip_keep = {int(c): coalition[self.player_clip == c] for c in np.unique(self.player_clip[~text])}
        return self.prompt.masked(clip_keep, self.players[text & ~coalition])

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
            in_user |= tokens_in_span(offsets, start, end)

    roles = np.where(in_user, USER, SYSTEM).astype(np.int64)
    players = np.asarray(explainable_positions(tokenizer, ids, np.flatnonzero(in_user), token_filter),
                         dtype=np.int64)
    return Chat(
        input_ids=ids,
        roles=roles,
        content_types=np.full(len(ids), TEXT, dtype=np.int64),
        turn_starts=_turn_starts(ids, tokenizer),
        players=players,
        texts=list(texts),
    )


def tokens_in_span(offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    """[T] bool: tokens (character ``offsets`` [T, 2]) lying inside ``[start, end)`` of the rendered text."""
    return (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0])


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
    """Turns begin at each ChatML ``<|im_start|>``, else at each occurrence of the prompt's first
    token when it is a special token.

    Used for the per-turn layout of the sample file and the turn boundaries of the hierarchical
    explainer; a template without such a marker is one turn.
    """
    if "<|im_start|>" in tokenizer.all_special_tokens:
        marker = tokenizer.convert_tokens_to_ids("<|im_start|>")
    elif len(ids) and int(ids[0]) in set(tokenizer.all_special_ids):
        marker = int(ids[0])
    else:
        return np.asarray([0], dtype=np.int64)
    return np.union1d([0], np.flatnonzero(ids == marker)).astype(np.int64)


# ----------------------------------------------------------------------------------- audio chats
Turn = Tuple[str, Any]  # ("text", str) or ("audio", float32[N] at the connector's sampling rate)


def turn_kinds(input_modality: str, n_sentences: int) -> List[Tuple[str, Optional[str]]]:
    """Per sentence: ("text", None) or ("audio", <audio column>), as the input modality names."""
    if input_modality == "text":
        return [("text", None)] * n_sentences
    if input_modality.startswith("audio__"):
        return [("audio", input_modality)] * n_sentences
    _, first, voice = input_modality.split("__")
    column = f"audio__{voice}"
    starts_with_text = first == "text_first"
    return [("text", None) if (i % 2 == 0) == starts_with_text else ("audio", column) for i in range(n_sentences)]


def row_turns(row, input_modality: str, sampling_rate: int) -> List[Turn]:
    """The user turns of a row: its sentences, each as text or as its spoken clip."""
    kinds = turn_kinds(input_modality, len(row.texts))
    clips = {column: row.clips(column, sampling_rate) for kind, column in kinds if kind == "audio"}
    for column, found in clips.items():
        if len(found) != len(row.texts):
            raise ValueError(f"row {row.index}: {column} has {len(found)} clips for {len(row.texts)} sentences")
    return [("text", text) if kind == "text" else ("audio", clips[column][i])
            for i, ((kind, column), text) in enumerate(zip(kinds, row.texts))]


def build_audio_chat(model, turns: Sequence[Turn], system_prompt: Optional[str],
                     token_filter: str, segment: Callable[[np.ndarray], List[Tuple[int, int]]]) -> Chat:
    """A chat for an audio connector: text tokens and the ``segment(clip)`` pieces of each clip are players.

    A player is located by its first prompt position; players are ordered by position, so a turn's
    players stay together (the hierarchical explainer's boundaries rely on it).
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for kind, value in turns:
        part = ({"type": "text", "text": value} if kind == "text"
                else {"type": "audio", "audio": value, "segments": segment(value)})
        messages.append({"role": "user", "content": [part]})
    prompt = model.encode(messages)
    tokenizer = model.tokenizer
    user_text = np.flatnonzero((prompt.roles == USER) & (prompt.content_types == TEXT))
    # (position, clip, segment); clip = segment = -1 for a text token
    players = [(int(p), -1, -1) for p in explainable_positions(tokenizer, prompt.input_ids, user_text, token_filter)]
    for c, segments in enumerate(prompt.clip_segments):
        for s in range(len(segments or [])):
            where = np.flatnonzero((prompt.clip == c) & (prompt.segment == s))
            if not len(where):
                raise ValueError(f"clip {c} segment {s} {segments[s]} holds no audio token; segments must "
                                 f"cover at least one {model.audio_token_ms} ms token")
            players.append((int(where[0]), c, s))
    position, clip, seg = np.asarray(sorted(players), dtype=np.int64).reshape(-1, 3).T
    return Chat(
        input_ids=prompt.input_ids,
        roles=prompt.roles,
        content_types=prompt.content_types,
        turn_starts=_turn_starts(prompt.input_ids, tokenizer),
        players=position,
        texts=[value for kind, value in turns if kind == "text"],
        prompt=prompt,
        player_clip=clip,
        player_segment=seg,
        token_samples=model.token_samples,
    )
