"""Audio players: segmenting a mono waveform into segments, and removing segments (masking).

Everything here is numpy only and works on sample indices. A *segment* is a half-open sample range
``(start, end)``; a clip's segments are sorted and disjoint but need not cover the clip (what lies
between or around them -- pauses, leading/trailing silence -- is not a player and is always kept).

The audio-token stride of Qwen2-Audio (the connector in ``connectors/hf_audio.py``)
--------------------------------------------------------------------------------------
``WhisperFeatureExtractor`` makes one log-mel frame per ``hop_length`` = 160 samples (10 ms at
16 kHz), centred STFT with ``n_fft`` = 400 (25 ms window); every clip is padded/truncated to 30 s =
3000 frames and ``feature_attention_mask`` marks the ``L = ceil(N / 160)`` frames of an N-sample clip.
The encoder then runs ``conv1`` (kernel 3, stride 1), ``conv2`` (kernel 3, stride 2) and, after its
transformer layers, ``AvgPool1d(2, stride=2)``: 4 frames per output vector. The processor expands the
clip's ``<|AUDIO|>`` placeholder into ``((L - 1) // 2 + 1 - 2) // 2 + 1`` tokens, which is
``floor(ceil(N / 320) / 2)`` = :func:`num_audio_tokens`. So one audio token = 4 x 160 = **640 samples =
40 ms** at 16 kHz (25 tokens per second, 75 for a 3 s clip, at most 750 for the 30 s cap), token k
being computed from frames 4k..4k+3, i.e. samples [640 k, 640 (k + 1)) (its receptive field is wider:
the STFT window, the convolutions and the encoder's global self-attention mix the whole clip).

Removing ``r`` samples that are a multiple of 640 removes exactly ``r / 640`` tokens, whatever the
clip's length (``ceil((N - 640 j) / 320) = ceil(N / 320) - 2 j``). :func:`segment_raw` segments on
that grid, and :func:`segment_pauses` snaps its boundaries to it (``align=True``), so each segment
owns a whole number of tokens and masking it shortens the audio-token run by exactly that number.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # WhisperFeatureExtractor hop: one mel frame per 10 ms at 16 kHz
FRAMES_PER_TOKEN = 4  # conv2 stride 2 x AvgPool1d stride 2 in the Qwen2-Audio encoder
TOKEN_STRIDE_MS = 1000 * HOP_LENGTH * FRAMES_PER_TOKEN // SAMPLE_RATE  # 40 ms
MAX_FRAMES = 3000  # 30 s: every clip is padded/truncated to this many frames

Segment = Tuple[int, int]


def token_stride(sr: int = SAMPLE_RATE, token_ms: float = TOKEN_STRIDE_MS) -> int:
    """Samples per audio token at sample rate ``sr`` (640 at 16 kHz for Qwen2-Audio's 40 ms)."""
    stride = sr * token_ms / 1000
    if stride != int(stride):
        raise ValueError(f"{token_ms} ms is not a whole number of samples at {sr} Hz")
    return int(stride)


def num_audio_tokens(num_samples: int, *, hop_length: int = HOP_LENGTH, max_frames: int = MAX_FRAMES) -> int:
    """Number of ``<|AUDIO|>`` tokens Qwen2-Audio gives an N-sample 16 kHz clip (the processor's formula).

    0 for a clip of at most 320 samples (such a clip contributes nothing; see ``connectors/hf_audio``).
    """
    frames = min(-(-int(num_samples) // hop_length), max_frames)
    if frames <= 0:
        return 0
    return max(((frames - 1) // 2 + 1 - 2) // 2 + 1, 0)


def segment_raw(num_samples: int, sr: int = SAMPLE_RATE, segment_ms: Optional[float] = None,
                token_ms: float = TOKEN_STRIDE_MS) -> List[Segment]:
    """Fixed-length segments on the audio-token grid, covering ``[0, num_samples)`` exactly.

    The length is ``segment_ms`` rounded to a whole number (>= 1) of ``token_ms`` tokens (40 ms for
    Qwen2-Audio), so with the default (None) every segment is one audio token. The last segment takes the remainder; a remainder
    shorter than half a token (which may yield no token of its own) is merged into the previous
    segment instead.
    """
    if num_samples <= 0:
        return []
    stride = token_stride(sr, token_ms)
    length = max(1, int(round((segment_ms or token_ms) / token_ms))) * stride
    starts = list(range(0, int(num_samples), length))
    segments = [(s, min(s + length, int(num_samples))) for s in starts]
    if len(segments) > 1 and segments[-1][1] - segments[-1][0] < stride // 2:
        segments[-2:] = [(segments[-2][0], segments[-1][1])]
    return segments


def frame_rms(waveform: np.ndarray, sr: int = SAMPLE_RATE, frame_ms: float = 20.0, hop_ms: float = 10.0) -> np.ndarray:
    """Short-time RMS: value i describes samples [i*hop, (i+1)*hop), measured over a ``frame_ms``
    window centred on them (zero-padded at both ends of the clip)."""
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    frame = max(1, int(round(sr * frame_ms / 1000)))
    hop = max(1, int(round(sr * hop_ms / 1000)))
    if len(x) == 0:
        return np.zeros(0)
    n = -(-len(x) // hop)
    left = max(0, (frame - hop) // 2)
    padded = np.concatenate([np.zeros(left), x, np.zeros(n * hop + frame - len(x))])
    csum = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    starts = np.arange(n) * hop  # window start in the padded signal = i*hop - left in the clip
    return np.sqrt(np.maximum(csum[starts + frame] - csum[starts], 0.0) / frame)


def segment_pauses(
    waveform: np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    threshold_db: float = -30.0,
    min_gap_ms: float = 60.0,
    min_segment_ms: float = 60.0,
    max_segment_ms: Optional[float] = 600.0,
    pad_ms: float = 20.0,
    frame_ms: float = 20.0,
    hop_ms: float = 10.0,
    align: bool = True,
    token_ms: float = TOKEN_STRIDE_MS,
) -> List[Segment]:
    """Split speech at low-energy gaps, so that a segment is roughly a word.

    1. Short-time RMS (``frame_ms`` windows every ``hop_ms``). The clip's level is the 95th percentile
       of the frame RMS (robust to a few clicks); a frame is *active* when its RMS is at least
       ``threshold_db`` dB relative to that level (and the clip is not digital silence).
    2. Inactive runs shorter than ``min_gap_ms`` (stop closures, short dips inside a word) are
       bridged; the remaining runs are gaps. Active runs shorter than ``min_segment_ms`` are dropped
       as clicks/noise (they stay in the waveform as non-segment audio, never masked).
    3. A segment longer than ``max_segment_ms`` (connected speech without a real pause) is split
       recursively at its lowest-energy frame (away from its ends), so segments stay word-sized;
       ``None`` disables this.
    4. Each segment is widened by ``pad_ms`` on both sides (at most to the middle of the gap to its
       neighbour, within the clip), so soft onsets and release tails stay in the word.
    5. With ``align`` the boundaries are rounded to the ``token_ms`` audio-token grid (see the module
       docstring) and segments that would become shorter than one token are dropped: each segment
       then owns a whole number of audio tokens (a last segment that ends at the clip's end keeps
       the clip's end, which need not be on the grid).

    Returns sorted, disjoint ``(start, end)`` sample ranges (possibly empty for silence).
    """
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    n = len(x)
    if n == 0:
        return []
    hop = max(1, int(round(sr * hop_ms / 1000)))
    rms = frame_rms(x, sr, frame_ms, hop_ms)
    level = float(np.percentile(rms, 95))
    if level <= 1e-8:
        return []
    active = rms >= level * 10 ** (threshold_db / 20)

    runs = _runs(active)  # active frame runs [a, b)
    min_gap = int(round(min_gap_ms / hop_ms))
    merged: List[List[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < min_gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    min_len = int(round(min_segment_ms / hop_ms))
    frames = [(a, b) for a, b in merged if b - a >= max(min_len, 1)]

    if max_segment_ms is not None:
        max_len = max(2, int(round(max_segment_ms / hop_ms)))
        edge = max(1, min_len // 2)
        split: List[Tuple[int, int]] = []
        stack = list(reversed(frames))
        while stack:
            a, b = stack.pop()
            if b - a <= max_len or b - a < 2 * edge + 1:
                split.append((a, b))
                continue
            cut = a + edge + int(np.argmin(rms[a + edge:b - edge]))
            stack.extend([(cut, b), (a, cut)])
        frames = split

    # frames -> samples, padded into the gaps (never past the middle of a gap)
    bounds = [(a * hop, min(b * hop, n)) for a, b in frames]
    pad = int(round(sr * pad_ms / 1000))
    segments: List[Segment] = []
    for i, (s, e) in enumerate(bounds):
        lo = 0 if i == 0 else (bounds[i - 1][1] + s) // 2
        hi = n if i == len(bounds) - 1 else (e + bounds[i + 1][0]) // 2
        segments.append((max(lo, s - pad), min(hi, e + pad)))

    if align:
        stride = token_stride(sr, token_ms)
        aligned: List[Segment] = []
        for s, e in segments:
            s2 = int(round(s / stride)) * stride
            e2 = min(int(round(e / stride)) * stride, n) if e < n else n
            if aligned:
                s2 = max(s2, aligned[-1][1])
            if e2 - s2 >= stride or (e2 == n and e2 - s2 > stride // 2):
                aligned.append((s2, e2))
        segments = aligned
    return segments


def remove_segments(
    waveform: np.ndarray, segments: Sequence[Segment], keep: Sequence[bool], *, fade_ms: float = 0.0,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Masking = removal: the waveform without the segments whose ``keep`` is False.

    Everything that is not an unkept segment is concatenated in its original order: kept segments
    AND the non-segment parts (pauses between words, leading/trailing silence). So removing a word
    joins the pause before it to the pause after it (a longer pause: silence is never a player and
    is never removed), and removing two neighbouring raw segments simply splices the audio. The
    result has ``len(waveform) - sum(lengths of the removed segments)`` samples, and with segments on
    the 40 ms grid exactly ``sum(removed tokens)`` fewer audio tokens.

    ``fade_ms`` > 0 applies a linear fade-out/fade-in of that length on both sides of every splice
    (the length is unchanged) to soften the click a cut through voiced audio makes; the default 0
    keeps the kept samples bit-identical.
    """
    x = np.asarray(waveform)
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    if len(keep) != len(segments):
        raise ValueError(f"keep has {len(keep)} entries for {len(segments)} segments")
    mask = np.ones(len(x), dtype=bool)
    last = 0
    for (s, e), k in zip(segments, keep):
        if not (0 <= s <= e <= len(x)) or s < last:
            raise ValueError(f"segments must be sorted, disjoint and inside the clip; got {(s, e)}")
        last = e
        if not k:
            mask[s:e] = False
    out = x[mask]
    if fade_ms > 0 and not keep.all() and len(out):
        out = out.astype(np.float32, copy=True)
        width = max(1, int(round(sr * fade_ms / 1000)))
        # a splice sits where the kept index jumps
        kept_index = np.flatnonzero(mask)
        for j in np.flatnonzero(np.diff(kept_index) > 1) + 1:
            left = out[max(0, j - width):j]
            left *= np.linspace(1.0, 0.0, len(left) + 1, dtype=np.float32)[1:]
            right = out[j:j + width]
            right *= np.linspace(0.0, 1.0, len(right) + 1, dtype=np.float32)[:-1]
    return out


def _runs(flags: np.ndarray) -> List[Tuple[int, int]]:
    """Half-open index ranges of the True runs."""
    padded = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
