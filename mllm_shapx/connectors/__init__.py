"""Chat-model connectors: ``hf_text`` (text LMs), ``hf_audio`` (Qwen2-Audio), ``liquid_audio`` (LFM2-Audio).

Every connector offers ``tokenizer``, ``pad_id``, ``eos_ids``, ``device``, ``model`` (the torch module
whose token embeddings and hidden states the CONTEXTUAL/STATIC similarities read) and a batched
``generate(prompts, *, max_new_tokens, temperature, top_k, seeds)``; the audio connectors add
``encode(conversation) -> AudioPrompt``, ``sampling_rate``, ``audio_token_ms`` and ``token_samples``
(samples per audio position). ``common.py`` holds what they share.
"""

from __future__ import annotations


class ConnectorUnavailable(RuntimeError):
    """A connector's optional package or weights are missing here: final, never worth retrying."""


def load_connector(conn, device=None):
    """The chat model of ``cfg.connector``, loaded once per process (a sweep's jobs share it)."""
    kind = getattr(conn.type, "value", conn.type)
    dtype = getattr(conn.dtype, "value", conn.dtype)
    if kind == "hf_text":
        from .hf_text import load_text_model

        return load_text_model(conn.model, revision=conn.revision, dtype=dtype, device=device,
                               trust_remote_code=conn.trust_remote_code)
    if kind == "hf_audio":
        from .hf_audio import load_audio_model

        return load_audio_model(conn.model, revision=conn.revision, dtype=dtype, device=device)
    if kind == "liquid_audio":
        from .liquid_audio import load_liquid_audio_model

        return load_liquid_audio_model(conn.model, revision=conn.revision, dtype=dtype, device=device)
    raise ValueError(f"connector.type: unknown connector {kind!r}")
