"""Shared fixtures: offline environment, one torch thread, Hydra compose, a tiny random chat model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_tiny_chat_model  # noqa: E402

import mllm_shapx.app  # noqa: E402,F401  (registers the schema and the run-slug resolver)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat_model"))


@pytest.fixture(scope="session")
def tiny_audio_dir(tmp_path_factory) -> Path:
    from tiny_audio_model import build_tiny_audio_model

    return build_tiny_audio_model(tmp_path_factory.mktemp("tiny_audio_model"))


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> the config the app would get for those command-line overrides."""

    def _compose(*overrides: str, return_hydra_config: bool = False):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose


def tiny_overrides(model_dir: Path, output_root: Path) -> list[str]:
    """Overrides for a fast real run: the tiny model, 2 rows, small budget, one thread, no bars."""
    return [
        "+experiment=mc_minimal",
        "connector=hf_text",
        f"connector.model={model_dir}",
        f"output_root={output_root}",
        "selection.max_samples=2",
        "selection.min_prompt_tokens=3",
        "selection.max_prompt_tokens=10",
        "shap.num_samples=12",
        "generation.max_new_tokens=4",
        "runtime.num_threads=1",
        "runtime.progress_bar=false",
    ]
