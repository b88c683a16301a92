"""A labelled audio chat prompt, shared by the audio connectors: what a player is, and how masking works.

An :class:`AudioPrompt` is a connector's rendering of one conversation: a token id per position (each
clip's run of audio placeholders expanded to the number of positions the model gives it) plus a
label per position. Masking (:meth:`AudioPrompt.masked`) removes text positions and cuts unkept
segments out of the clips' waveforms; the placeholder run of each clip is resized to the masked
clip, so the model sees exactly the audio that was kept.

The conversation helpers (:func:`normalise`, :func:`audio_part`, :func:`audio_labels`) are here so that
every connector reads a conversation, and labels its audio positions, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..audio import remove_segments
from ..chat import ASSISTANT, AUDIO, SYSTEM, USER

ROLE_IDS = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}
Segments = Optional[List[Tuple[int, int]]]


def normalise(conversation: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Messages with a known role and a list of typed parts (a string content is one text part)."""
    messages = []
    for message in conversation:
        role = message["role"]
        if role not in ROLE_IDS:
            raise ValueError(f"unknown role {role!r}")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for part in content:
            kind = part.get("type", "audio" if "audio" in part else "text")
            if kind not in ("text", "audio"):
                raise ValueError(f"unknown content part type {kind!r}")
            parts.append(dict(part, type=kind))
        messages.append({"role": role, "content": parts})
    return messages


def audio_part(part: Mapping[str, Any]) -> Tuple[np.ndarray, Segments]:
    """An audio part's clip (mono float32) and its segments as int pairs (None when not given)."""
    clip = np.asarray(part["audio"], dtype=np.float32)
    if clip.ndim != 1:
        raise ValueError(f"an audio clip must be mono 1-D 16 kHz samples, got shape {clip.shape}")
    segs = part.get("segments")
    return clip, None if segs is None else [(int(s), int(e)) for s, e in segs]


def audio_labels(clip_of: np.ndarray, clip_segments: Sequence[Segments],
                 token_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(audio_index, segment)`` per position: index k of a clip's position (samples
    ``[k, k + 1) * token_samples``) and the segment holding its centre sample (-1: none, or not audio)."""
    audio_index = np.full(len(clip_of), -1, np.int64)
    segment = np.full(len(clip_of), -1, np.int64)
    for c, segs in enumerate(clip_segments):
        where = np.flatnonzero(clip_of == c)
        audio_index[where] = np.arange(len(where))
        centres = np.arange(len(where)) * token_samples + token_samples // 2
        for s, (a, b) in enumerate(segs or []):
            segment[where[(centres >= a) & (centres < b)]] = s
    return audio_index, segment


@dataclass
class EncodedPrompt:
    """What ``generate`` needs for one row: token ids (audio runs expanded) and the clips, in order.

    Each clip's run of audio placeholder tokens must have as many positions as the connector gives the clip.
    """

    input_ids: np.ndarray
    clips: List[np.ndarray]


@dataclass
class AudioPrompt(EncodedPrompt):
    """A rendered prompt with a label per position (all arrays [T], -1 = not applicable).

    ``roles``: USER / ASSISTANT for message content, SYSTEM for system content and every template
    token (markers, role names, ``Audio N:``, ``<|audio_bos|>``/``<|audio_eos|>``).
    ``content_types``: AUDIO for the ``<|AUDIO|>`` tokens, TEXT otherwise.
    ``part``: the content part (numbered over the whole conversation, in order) the token comes from.
    ``clip``: for AUDIO tokens, the clip (numbered from 0 in order of appearance).
    ``audio_index``: for AUDIO tokens, the token's index k inside its clip (covers samples
    ``[k, k + 1) * token_samples`` of the connector: 640 for Qwen2-Audio, 1280 for LFM2-Audio).
    ``segment``: for AUDIO tokens of a clip given with ``segments``, the segment containing the
    token's centre sample (-1 when it lies in a gap between segments).
    """

    roles: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    content_types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    clip: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    audio_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    clip_segments: List[Segments] = field(default_factory=list)
    audio_token_id: int = -1
    # positions a clip of N samples takes in the prompt: the connector's encoder geometry, which it sets
    clip_tokens: Optional[Callable[[int], int]] = None

    @property
    def clip_num_tokens(self) -> List[int]:
        return [int(np.sum(self.clip == c)) for c in range(len(self.clips))]

    def masked(self, clip_keep: Optional[Mapping[int, Sequence[bool]]] = None,
               drop_positions: Optional[Sequence[int]] = None) -> EncodedPrompt:
        """The prompt with text positions removed and, per clip, unkept segments removed.

        ``clip_keep[c]`` is a keep vector over clip c's ``segments`` (``remove_segments``); its
        ``<|AUDIO|>`` run is replaced by one of the masked clip's length. ``drop_positions`` are
        positions of this prompt to remove (text players; audio positions are not allowed).
        """
        if self.clip_tokens is None:
            raise ValueError("AudioPrompt.clip_tokens is unset: the connector that encodes a prompt must set it")
        keep_pos = np.ones(len(self.input_ids), dtype=bool)
        if drop_positions is not None and len(drop_positions):
            drop = np.asarray(drop_positions, dtype=np.int64)
            if np.any(self.content_types[drop] == AUDIO):
                raise ValueError("audio positions are masked through clip_keep, not drop_positions")
            keep_pos[drop] = False
        clips = list(self.clips)
        for c, keep in (clip_keep or {}).items():
            if self.clip_segments[c] is None:
                raise ValueError(f"clip {c} was given without segments")
            clips[c] = remove_segments(self.clips[c], self.clip_segments[c], keep)
        pieces: List[np.ndarray] = []
        pos = 0
        for c in range(len(self.clips)):
            run = np.flatnonzero(self.clip == c)
            if len(run) == 0:  # a zero-token clip: nothing to replace
                continue
            start, end = int(run[0]), int(run[-1]) + 1
            pieces.append(self.input_ids[pos:start][keep_pos[pos:start]])
            pieces.append(np.full(self.clip_tokens(len(clips[c])), self.audio_token_id, dtype=np.int64))
            pos = end
        pieces.append(self.input_ids[pos:][keep_pos[pos:]])
        return EncodedPrompt(np.concatenate(pieces).astype(np.int64), clips)
