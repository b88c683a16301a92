"""``liquid_audio``: LiquidAI's LFM2-Audio (audio + text in, text or text + speech out) via ``liquid-audio``.

The package is optional (``pip install 'mllm_shapx[liquid-audio]'``) because it needs Python >= 3.12
(PEP 695 syntax); without it, loading raises :class:`LiquidAudioUnavailable` with a one-line reason.

Why a separate layout function. ``liquid-audio`` builds prompts incrementally with ``ChatState``
(``<|startoftext|>``, then per message ``<|im_start|>{role}\\n``, each part, ``<|im_end|>\\n``) and
never exposes a token list with audio positions. :func:`layout` rebuilds exactly that sequence as an
:class:`AudioPrompt` (one placeholder id :data:`AUDIO_IN` per audio-in embedding, a label per
position), needing only the text tokenizer; :func:`chat_state_ops` turns a (masked) prompt back into
``ChatState`` calls, with text ids appended as ids, never re-tokenised.

80 ms geometry (``model/conformer/processor.py``, ``processor.py``, ``utils.py`` of liquid-audio 1.3.0).
The mel preprocessor uses hop 160 (``window_stride`` 0.01 s) and a centred STFT (``n_fft`` 512,
``exact_pad`` False), so ``torch.stft`` gives ``1 + N // 160`` frames; with the model's ``pad_to`` 0
nothing is added. ``ChatState.add_audio`` keeps all of them (``mel[0]``, including the last frame,
which lies past ``seq_len = N // 160`` and is set to ``pad_value``) and gives the clip
``mel2emb_len(frames) = ceil(frames / 8)`` positions (the conformer subsamples by 8). Hence
:func:`lfm2_audio_tokens` ``= N // 1280 + 1``: one position per 1280 samples = 80 ms; position k
stands for samples ``[1280 k, 1280 (k + 1))``; removing 1280 j samples removes exactly j positions.
When ``N mod 1280 <= 640`` the last position's centre lies past the clip (it sees only the tail and
the pad frame), so it belongs to no segment. An empty clip gets 0 positions (``ChatState`` cannot
encode it; it is skipped, like a text part whose tokens were all removed).

Tested here without weights: :func:`lfm2_audio_tokens`, :func:`layout`, masking, :func:`chat_state_ops`,
:func:`apply_ops` (against a recording stand-in for ``ChatState``) and the per-prompt loop of ``generate``
(against a scripted stand-in model); loading and the real package calls need the package and the weights.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..chat import AUDIO, SYSTEM, TEXT
from . import ConnectorUnavailable
from .common import DTYPES, load_once, resolve_device, stop_ids, trim_at_eos
from .prompt import ROLE_IDS, AudioPrompt, EncodedPrompt, Segments, audio_labels, audio_part, normalise

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # window_stride 0.01 s at 16 kHz: one mel frame per 10 ms
MELS_PER_TOKEN = 8  # utils.mel2emb_len: ceil(frames / 8)
TOKEN_SAMPLES = HOP_LENGTH * MELS_PER_TOKEN  # 1280 = 80 ms
# Placeholder id of an audio-in position. Not a token id (those are >= 0) and not -1, which the
# AudioPrompt label arrays use for "not applicable".
AUDIO_IN = -2
START, IM_START, IM_END = "<|startoftext|>", "<|im_start|>", "<|im_end|>"
_TEXT_FLAG = 1  # liquid_audio.utils.LFMModality.TEXT (IntEnum from auto(); checked at load)
# ChatState's preprocessor rejects (on CUDA) a clip with exactly one valid mel frame (160..319 samples);
# such a clip is zero-padded to 320 samples, which gives it the same single position.
_MIN_SAMPLES = 2 * HOP_LENGTH
_END_OF_AUDIO = 2048  # the audio-out code closing a speech segment (LFM2AudioModel.audio_vocab_size - 1)

MISSING_PACKAGE = (
    f"connector=liquid_audio needs the liquid-audio package, which requires Python >= 3.12 (this is Python "
    f"{platform.python_version()}): on Python 3.12+ run pip install 'mllm_shapx[liquid-audio]'; or use "
    f"connector=hf_audio (Qwen2-Audio) / connector=hf_audio_tiny"
)


class LiquidAudioUnavailable(ConnectorUnavailable):
    """The package or the weights are missing: a one-line, actionable message."""


def lfm2_audio_tokens(num_samples: int) -> int:
    """Positions ``ChatState.add_audio`` gives a 16 kHz clip of ``num_samples`` (N // 1280 + 1; 0 if empty)."""
    n = int(num_samples)
    if n <= 0:
        return 0
    frames = 1 + n // HOP_LENGTH  # torch.stft(center=True): 1 + (N + 2 * (n_fft // 2) - n_fft) // hop
    return -(-frames // MELS_PER_TOKEN)  # mel2emb_len


def layout(tokenizer, conversation: Sequence[Mapping[str, Any]],
           clip_tokens: Callable[[int], int] = lfm2_audio_tokens) -> AudioPrompt:
    """The ``ChatState`` token sequence of a conversation plus the generation prompt, labelled per position.

    Every string is encoded on its own with ``add_special_tokens=False``, as ``ChatState.add_text`` does.
    """
    ids: List[int] = []
    labels: List[Tuple[int, int, int, int]] = []  # role, content type, part, clip
    clips: List[np.ndarray] = []
    clip_segments: List[Segments] = []

    def put(token_ids, role=SYSTEM, ctype=TEXT, part=-1, clip=-1):
        ids.extend(int(t) for t in token_ids)
        labels.extend([(role, ctype, part, clip)] * len(token_ids))

    def encode(text: str) -> List[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    put(encode(START))
    part_no = 0
    for message in normalise(conversation):
        put(encode(f"{IM_START}{message['role']}\n"))
        role = ROLE_IDS[message["role"]]
        for part in message["content"]:
            if part["type"] == "text":
                put(encode(part["text"]), role, TEXT, part_no)
            else:
                clip, segs = audio_part(part)
                put([AUDIO_IN] * clip_tokens(len(clip)), role, AUDIO, part_no, len(clips))
                clips.append(clip)
                clip_segments.append(segs)
            part_no += 1
        put(encode(f"{IM_END}\n"))
    put(encode(f"{IM_START}assistant\n"))

    input_ids = np.asarray(ids, dtype=np.int64)
    roles, ctypes, part_of, clip_of = np.asarray(labels, dtype=np.int64).reshape(-1, 4).T
    if np.any(input_ids[ctypes == TEXT] < 0):
        raise ValueError("the tokenizer produced a negative token id")
    audio_index, segment = audio_labels(clip_of, clip_segments, TOKEN_SAMPLES)
    return AudioPrompt(input_ids=input_ids, clips=clips, roles=roles, content_types=ctypes, part=part_of,
                       clip=clip_of, audio_index=audio_index, segment=segment, clip_segments=clip_segments,
                       audio_token_id=AUDIO_IN, clip_tokens=clip_tokens)


def chat_state_ops(prompt: EncodedPrompt, audio_token_id: int = AUDIO_IN,
                   clip_tokens: Callable[[int], int] = lfm2_audio_tokens) -> List[Tuple[str, np.ndarray]]:
    """``[("text", ids) | ("audio", clip), ...]`` in prompt order: runs of text ids, one op per clip.

    Adjacent clips share one placeholder run, so runs are split by each clip's position count;
    clips with no positions (empty) are skipped.
    """
    ids = np.asarray(prompt.input_ids, dtype=np.int64)
    ops: List[Tuple[str, np.ndarray]] = []
    pos = 0
    for c, clip in enumerate(prompt.clips):
        n = clip_tokens(len(clip))
        if n == 0:
            continue
        found = np.flatnonzero(ids[pos:] == audio_token_id)
        if len(found) == 0:
            raise ValueError(f"clip {c}: no placeholder run left in the prompt")
        start = pos + int(found[0])
        if start > pos:
            ops.append(("text", ids[pos:start]))
        if len(ids[start:start + n]) != n or np.any(ids[start:start + n] != audio_token_id):
            raise ValueError(f"clip {c}: expected {n} consecutive placeholders at position {start}")
        ops.append(("audio", np.asarray(clip, dtype=np.float32)))
        pos = start + n
    if np.any(ids[pos:] == audio_token_id):
        raise ValueError("the prompt has more placeholders than its clips take")
    if pos < len(ids):
        ops.append(("text", ids[pos:]))
    return ops


def apply_ops(state, ops: Sequence[Tuple[str, np.ndarray]]) -> None:
    """Replay ``ops`` on a fresh ``ChatState`` (which already holds ``<|startoftext|>``: checked, skipped)."""
    start = [int(t) for t in state.text[0].tolist()]
    if not ops or ops[0][0] != "text" or [int(t) for t in ops[0][1][:len(start)]] != start:
        raise ValueError("the prompt does not begin with the ChatState's own start tokens")
    for i, (kind, value) in enumerate(ops):
        if kind == "text":
            ids = np.asarray(value, dtype=np.int64)[len(start) if i == 0 else 0:]
            if len(ids):
                text = torch.as_tensor(ids, dtype=torch.long)[None]
                state.append(text, text.new_empty((state.codebooks, 0)), torch.full_like(text, _TEXT_FLAG))
        elif kind == "audio":
            clip = np.asarray(value, dtype=np.float32)
            if 0 < len(clip) < _MIN_SAMPLES:
                clip = np.pad(clip, (0, _MIN_SAMPLES - len(clip)))
            state.add_audio(torch.from_numpy(np.ascontiguousarray(clip))[None], SAMPLE_RATE)
        else:
            raise ValueError(f"unknown op {kind!r}")


def load_liquid_audio_model(model: str, *, revision: Optional[str] = None, dtype: str = "bfloat16",
                            device: Optional[str] = None) -> "LiquidAudioModel":
    """Load once per process (every job of a sweep in this process reuses it)."""
    _import_package()  # fail with the one-line reason before anything else
    return load_once(LiquidAudioModel, model, revision=revision, dtype=dtype, device=resolve_device(device))


def _import_package():
    try:
        import liquid_audio
    except (ImportError, SyntaxError) as exc:  # SyntaxError: an install on Python < 3.12
        raise LiquidAudioUnavailable(MISSING_PACKAGE) from exc
    return liquid_audio


def _snapshot(model: str, revision: Optional[str]) -> Path:
    """The local checkpoint directory (a local path as is, else the HF cache/Hub snapshot)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision))
    except (OSError, ValueError) as exc:  # offline/not cached, unknown repo or revision, network errors
        rev = f" --revision {revision}" if revision else ""
        raise LiquidAudioUnavailable(
            f"connector=liquid_audio: the weights of {model} (revision {revision or 'main'}) are not in the "
            f"Hugging Face cache and could not be fetched ({type(exc).__name__}): download them with "
            f"huggingface-cli download {model}{rev} on a machine with Hub access") from exc


class LiquidAudioModel:
    sampling_rate = SAMPLE_RATE
    audio_token_ms = 1000 * TOKEN_SAMPLES // SAMPLE_RATE  # 80
    token_samples = TOKEN_SAMPLES
    audio_token_id = AUDIO_IN
    output_sampling_rate = 24000
    # speech-out sampling of the package's README (greedy codes give degenerate speech); seeded per prompt
    audio_temperature, audio_top_k = 1.0, 4

    def __init__(self, model: str, *, revision: Optional[str] = None, dtype: str = "bfloat16",
                 device: Optional[str] = None):
        la = _import_package()
        self.device = resolve_device(device)
        path = _snapshot(model, revision)
        self.dtype = torch.bfloat16 if dtype == "auto" else DTYPES[dtype]
        self.processor = la.LFM2AudioProcessor.from_pretrained(path, device=self.device).eval()
        self.model = la.LFM2AudioModel.from_pretrained(path, dtype=self.dtype, device=self.device).eval()
        self._chat_state = la.ChatState
        self.tokenizer = self.processor.text
        feat = self.processor.audio.featurizer
        geometry = (feat.sample_rate, feat.hop_length, feat.n_fft % 2, feat.exact_pad, feat.pad_to)
        if geometry != (SAMPLE_RATE, HOP_LENGTH, 0, False, 0):
            raise ValueError(f"{model}: unsupported mel preprocessor (sample rate {feat.sample_rate}, hop "
                             f"{feat.hop_length}, n_fft {feat.n_fft}, exact_pad {feat.exact_pad}, pad_to "
                             f"{feat.pad_to}); lfm2_audio_tokens assumes 16000/160/even/False/0")
        if int(la.LFMModality.TEXT) != _TEXT_FLAG:
            raise ValueError("liquid_audio.LFMModality.TEXT changed value")
        # end of turn, end of text (interleaved) and start of speech (sequential) end the text answer
        markers = [self.tokenizer.convert_tokens_to_ids(t) for t in (IM_END, "<|text_end|>", "<|audio_start|>")]
        self.eos_ids, self.pad_id = stop_ids(self.tokenizer, *[t for t in markers + [self.tokenizer.eos_token_id]
                                                               if t != self.tokenizer.unk_token_id])
        self.text_model = self.model.lfm  # the LFM2 backbone: CONTEXTUAL/STATIC similarities read it

    def num_audio_tokens(self, num_samples: int) -> int:
        return lfm2_audio_tokens(num_samples)

    def encode(self, conversation: Sequence[Mapping[str, Any]]) -> AudioPrompt:
        return layout(self.tokenizer, conversation, self.num_audio_tokens)

    def generate(self, prompts: Sequence[Any], *, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, seeds: Optional[Sequence[int]] = None, return_audio: bool = False):
        """Per prompt (one at a time): text ids (end-of-turn/markers excluded), or with ``return_audio``
        ``(text ids, 24 kHz float32 waveform or None)`` from interleaved generation."""
        prompts = [p if isinstance(p, EncodedPrompt) else self.encode(p) for p in prompts]
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        sampling = {"max_new_tokens": max_new_tokens,
                    "text_temperature": float(temperature) if temperature > 0 else None,
                    "text_top_k": top_k if temperature > 0 else None,
                    "audio_temperature": self.audio_temperature, "audio_top_k": self.audio_top_k}
        dev = torch.device(self.device)
        rng_devices = []
        if dev.type == "cuda":
            rng_devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
        out = []
        for prompt, seed in zip(prompts, seeds):
            with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
                state = self._chat_state(self.processor, codebooks=self.model.codebooks, dtype=self.dtype)
                apply_ops(state, chat_state_ops(prompt, AUDIO_IN, self.num_audio_tokens))
                torch.manual_seed(int(seed))  # the package samples with the global generators
                out.append(self._generate_one(state, sampling, return_audio))
        return out

    def _generate_one(self, state, sampling: dict, return_audio: bool):
        text: List[int] = []
        frames: List[torch.Tensor] = []
        if return_audio:
            for t in self.model.generate_interleaved(**state, **sampling):
                if t.numel() == 1:
                    text.append(int(t))
                elif int(t[0]) != _END_OF_AUDIO:
                    frames.append(t)
        else:
            for t in self.model.generate_sequential(**state, **sampling):
                if t.numel() != 1:
                    break
                text.append(int(t))
                if text[-1] in self.eos_ids:  # the rest would be trimmed
                    break
        ids = trim_at_eos(np.asarray(text, dtype=np.int64), self.eos_ids)
        if not return_audio:
            return ids
        if not frames:
            return ids, None
        codes = torch.stack(frames, 1)[None]  # [1, 8, T]
        # LFM2.5-Audio ships the LFM2 detokenizer (processor.decode); LFM2-Audio only Mimi
        decoder = self.processor.decode if self.processor.detokenizer_path else self.processor.mimi.decode
        return ids, decoder(codes).float().reshape(-1).cpu().numpy()
