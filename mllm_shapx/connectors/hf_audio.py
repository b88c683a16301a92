"""``hf_audio``: an audio-in, text-out chat model on transformers' native Qwen2-Audio.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": str |
[part, ...]}`` with parts ``{"type": "text", "text": str}`` or ``{"type": "audio", "audio":
float32[N] (16 kHz mono), "segments": optional [(start, end), ...]}``. Any number of clips per turn
and per conversation (each clip renders as its own ``<|audio_bos|><|AUDIO|><|audio_eos|>``
placeholder).

Encoding (:meth:`HFAudioModel.encode`) is done here rather than by ``processor(text=..., audio=...)``
so that every prompt position can be labelled (role, content type, clip, segment); it produces
exactly the processor's ``input_ids``/``input_features``/``feature_attention_mask`` (tested):

1. the conversation is rendered with the processor's chat template, text parts replaced by
   sentinels, so user text is located exactly, never confused with template text;
2. each clip's ``<|AUDIO|>`` is expanded into ``num_audio_tokens(len(clip))`` tokens (one per
   40 ms, see ``mllm_shapx/audio.py``), and the string is tokenised with offsets;
3. the clips go through the processor's ``WhisperFeatureExtractor`` with the processor's own
   settings (padding to 30 s = 3000 frames, attention mask): each clip is padded on its own, so a
   clip's features never depend on the other clips of a batch.

A clip too short to give a token (<= 320 samples, e.g. every segment masked) keeps its
``<|audio_bos|><|audio_eos|>`` markers with no ``<|AUDIO|>`` between them and sends no features: the
analogue of a user turn whose text tokens were all removed (its template markers stay).

Generation batches many prompts into ONE ``generate`` call: token ids are left-padded, all clips of
all rows are encoded together and scattered, in row-major order, into the ``<|AUDIO|>`` positions of
the input embeddings (:meth:`HFAudioModel.input_embeddings`, the model's own merge, done here because
the model silently switches to a crashing legacy merge when no row has two adjacent audio tokens);
``generate`` then gets ``inputs_embeds`` + ``input_ids``. Sampling uses the per-row seeded sampler of
``common.py``, so an answer depends only on its own prompt and seed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration
from transformers.masking_utils import create_bidirectional_mask

from ..audio import HOP_LENGTH, SAMPLE_RATE, TOKEN_STRIDE_MS, num_audio_tokens, token_stride
from ..chat import AUDIO, SYSTEM, TEXT, tokens_in_span
from .common import DTYPES, generate_padded, load_once, resolve_device, stop_ids
from .embedded import is_embedded, resolve_embedded
from .prompt import ROLE_IDS, AudioPrompt, EncodedPrompt, Segments, audio_labels, audio_part, normalise


def load_audio_model(model: str, *, revision: Optional[str] = None, dtype: str = "float32",
                     device: Optional[str] = None) -> "HFAudioModel":
    """Load once per process (every job of a sweep in this process reuses it)."""
    return load_once(HFAudioModel, model, revision=revision, dtype=dtype, device=resolve_device(device))


class HFAudioModel:
    sampling_rate = SAMPLE_RATE
    audio_token_ms = TOKEN_STRIDE_MS  # 40: one <|AUDIO|> per 4 mel frames (see mllm_shapx/audio.py)
    token_samples = token_stride(sampling_rate, audio_token_ms)  # 640

    def __init__(self, path: str, dtype: str = "float32", device: Optional[str] = None, *,
                 revision: Optional[str] = None):
        self.device = resolve_device(device)
        path = resolve_embedded(path) if is_embedded(str(path)) else path
        self.processor = AutoProcessor.from_pretrained(path, revision=revision)
        self.tokenizer = self.processor.tokenizer
        self.feature_extractor = self.processor.feature_extractor
        self.model = Qwen2AudioForConditionalGeneration.from_pretrained(
            path, revision=revision, dtype=DTYPES[dtype]).to(self.device).eval()
        if self.feature_extractor.sampling_rate != self.sampling_rate:
            raise ValueError(f"expected a 16 kHz feature extractor, got {self.feature_extractor.sampling_rate}")
        if self.feature_extractor.hop_length != HOP_LENGTH:  # token_samples and segmentation assume it
            raise ValueError(f"{path}: feature extractor hop_length {self.feature_extractor.hop_length}; the "
                             f"{self.audio_token_ms} ms audio-token grid assumes {HOP_LENGTH}")
        self.audio_token = self.processor.audio_token
        self.audio_token_id = int(self.model.config.audio_token_id)
        if self.tokenizer.convert_tokens_to_ids(self.audio_token) != self.audio_token_id:
            raise ValueError("the tokenizer's audio token does not match the model's audio_token_id")
        self.chat_template = self.processor.chat_template or self.tokenizer.chat_template
        # Qwen2-Audio-Instruct ends a turn with <|im_end|> while its tokenizer's eos is <|endoftext|>
        self.eos_ids, self.pad_id = stop_ids(self.tokenizer, self.tokenizer.eos_token_id,
                                             self.model.generation_config.eos_token_id)

    # ------------------------------------------------------------------ encoding
    def num_audio_tokens(self, num_samples: int) -> int:
        fe = self.feature_extractor
        return num_audio_tokens(num_samples, hop_length=fe.hop_length, max_frames=fe.nb_max_frames)

    def encode(self, conversation: Sequence[Mapping[str, Any]]) -> AudioPrompt:
        messages = normalise(conversation)
        sentinel_msgs, texts = [], []
        for message in messages:
            parts = []
            for part in message["content"]:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": f"\x00{len(texts)}\x00"})
                    texts.append(part["text"])
                else:
                    parts.append({"type": "audio"})
            sentinel_msgs.append({"role": message["role"], "content": parts})
        rendered = self.tokenizer.apply_chat_template(
            sentinel_msgs, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False)

        # Walk the parts in order: text sentinels and audio placeholders, labelling character spans.
        pieces: List[str] = []
        spans: List[Tuple[int, int, int, int, int, int]] = []  # start, end, role, type, part, clip
        clips: List[np.ndarray] = []
        clip_segments: List[Segments] = []
        cursor, length, part_no, text_no = 0, 0, 0, 0
        for message in messages:
            role = ROLE_IDS[message["role"]]
            for part in message["content"]:
                if part["type"] == "text":
                    needle, text = f"\x00{text_no}\x00", part["text"]
                    text_no += 1
                else:
                    needle, text = self.audio_token, None
                found = rendered.find(needle, cursor)
                if found < 0:
                    raise ValueError(f"the chat template dropped or altered a {message['role']} {part['type']} part")
                pieces.append(rendered[cursor:found])
                length += found - cursor
                if part["type"] == "text":
                    pieces.append(text)
                    spans.append((length, length + len(text), role, TEXT, part_no, -1))
                    length += len(text)
                else:
                    clip, segs = audio_part(part)
                    n_tok = self.num_audio_tokens(len(clip))
                    pieces.append(self.audio_token * n_tok)
                    spans.append((length, length + len(self.audio_token) * n_tok, role, AUDIO, part_no, len(clips)))
                    length += len(self.audio_token) * n_tok
                    clips.append(clip)
                    clip_segments.append(segs)
                cursor = found + len(needle)
                part_no += 1
        pieces.append(rendered[cursor:])
        if "\x00" in rendered[cursor:] or rendered.count(self.audio_token) != len(clips):
            raise ValueError("the chat template rendered an unexpected number of text or audio parts")
        full = "".join(pieces)

        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        T = len(ids)
        roles = np.full(T, SYSTEM, np.int64)
        ctypes = np.full(T, TEXT, np.int64)
        part_of = np.full(T, -1, np.int64)
        clip_of = np.full(T, -1, np.int64)
        for start, end, role, ctype, part_no, clip in spans:
            inside = tokens_in_span(offsets, start, end)
            if ctype == AUDIO:
                inside &= ids == self.audio_token_id
            roles[inside] = role
            ctypes[inside] = ctype
            part_of[inside] = part_no
            clip_of[inside] = clip
        for c, clip in enumerate(clips):
            found, expected = int(np.sum(clip_of == c)), self.num_audio_tokens(len(clip))
            if found != expected:
                raise ValueError(f"clip {c}: {found} audio tokens after tokenisation, expected {expected}")
        audio_index, segment = audio_labels(clip_of, clip_segments, self.token_samples)
        if int(np.sum(ids == self.audio_token_id)) != int(np.sum(clip_of >= 0)):
            raise ValueError("a text part contains the audio placeholder token")
        return AudioPrompt(input_ids=ids, clips=clips, roles=roles, content_types=ctypes, part=part_of,
                           clip=clip_of, audio_index=audio_index, segment=segment, clip_segments=clip_segments,
                           audio_token_id=self.audio_token_id, clip_tokens=self.num_audio_tokens)

    def features(self, clips: Sequence[np.ndarray]) -> Dict[str, torch.Tensor]:
        """``input_features`` [C, mel, 3000] and ``feature_attention_mask`` [C, 3000], as the processor makes them.

        Clips giving no audio token are skipped (the model would have no position to put them). Equal
        clips (a batch's coalitions often keep a clip whole) are extracted once: features are per clip.
        """
        unique: Dict[Tuple[int, bytes], int] = {}
        distinct: List[np.ndarray] = []
        index: List[int] = []
        for clip in clips:
            if self.num_audio_tokens(len(clip)) == 0:
                continue
            clip = np.asarray(clip, dtype=np.float32)  # what the extractor casts to
            key = (len(clip), clip.tobytes())
            if key not in unique:
                unique[key] = len(distinct)
                distinct.append(clip)
            index.append(unique[key])
        if not distinct:
            return {}
        out = self.feature_extractor(
            distinct, sampling_rate=self.sampling_rate, padding="max_length", return_attention_mask=True,
            return_tensors="pt",
        )
        rows = torch.as_tensor(index)
        return {"input_features": out["input_features"][rows], "feature_attention_mask": out["attention_mask"][rows]}

    # ------------------------------------------------------------------ generation
    def generate(self, conversations: Sequence[Any], *, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, seeds: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """Answer token ids per conversation (or per ``EncodedPrompt``), all in one ``generate`` call.

        Generation stops at, and excludes, the end-of-turn token.
        """
        prompts = [c if isinstance(c, EncodedPrompt) else self.encode(c) for c in conversations]
        for row, prompt in enumerate(prompts):
            found = int(np.sum(prompt.input_ids == self.audio_token_id))
            expected = sum(self.num_audio_tokens(len(c)) for c in prompt.clips)
            if found != expected:
                raise ValueError(f"row {row}: {found} audio tokens for clips worth {expected}")
        clips = [clip for prompt in prompts for clip in prompt.clips]
        return generate_padded(self.model, [p.input_ids for p in prompts], pad_id=self.pad_id, eos_ids=self.eos_ids,
                               device=self.device, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_k=top_k, seeds=seeds, embed=lambda ids: self.input_embeddings(ids, clips))

    def input_embeddings(self, input_ids: torch.Tensor, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """The LM's input embeddings with each clip's encoding scattered into its ``<|AUDIO|>`` run.

        This is what ``Qwen2AudioModel.forward`` does on its non-legacy path, done here so that it
        is always the path taken: the model switches to a legacy merge (which re-expands every
        ``<|AUDIO|>`` into a clip's worth of positions, and crashes under ``generate``) whenever no
        row of the batch holds two adjacent ``<|AUDIO|>`` tokens -- e.g. a batch of coalitions that
        each keep a single 40 ms segment. Clips are taken in row-major order, as the model does.
        """
        core = self.model.model
        embeds = core.get_input_embeddings()(input_ids)
        feats = self.features(clips)
        if not feats:
            return embeds
        features = feats["input_features"].to(self.device, self.model.dtype)
        frames = feats["feature_attention_mask"].to(self.device).sum(-1)
        tower = core.audio_tower
        conv_lengths, token_lengths = tower._get_feat_extract_output_lengths(frames)
        max_len = (features.shape[-1] - 2) // 2 + 1
        mask_2d = (torch.arange(max_len, device=self.device)[None, :] < conv_lengths[:, None]).long()
        dummy = torch.zeros((features.shape[0], max_len, 1), dtype=embeds.dtype, device=self.device)
        audio_mask = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=mask_2d)
        hidden = tower(features, attention_mask=audio_mask).last_hidden_state
        projected = core.multi_modal_projector(hidden)
        valid = torch.arange(projected.shape[1], device=self.device)[None, :] < token_lengths[:, None]
        audio = projected[valid].to(embeds.dtype)
        slots = input_ids == self.audio_token_id
        if int(slots.sum()) != audio.shape[0]:
            raise ValueError(f"{int(slots.sum())} <|AUDIO|> positions for {audio.shape[0]} audio encodings")
        return embeds.masked_scatter(slots.unsqueeze(-1), audio)
