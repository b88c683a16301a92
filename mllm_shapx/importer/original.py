"""The original runner's vocabulary and defaults the import works from (and where this app's conf/ is)."""

from __future__ import annotations

from ..config import CONF_DIR, ExplainerType  # noqa: F401  (CONF_DIR: re-exported for the importer)

ALIASES = {"mc": "limited_mc", "cc": "limited_cc", "neyman": "limited_neyman", "precise": "exact"}
EXPLAINERS = tuple(member.value for member in ExplainerType)  # the original's, and this app's, in its order
# The original's allowed inner / first-layer explainers of a hierarchical variant (no standard_mc).
HIER_LAYER_TYPES = ("exact", "limited_mc", "limited_cc", "standard_cc", "limited_neyman", "standard_neyman")

# The original's defaults, where they differ from this app's or decide what runs; written explicitly.
ORIGINAL = {
    "output_root": "experiments_output",
    "connector": "liquid_audio",
    "dataset": {"subset": "single_sentence", "split": "test", "repo_id": "Pawlo77/mllm-shap",
                "revision": "e1a6f11d58749529f10cc520dfaeb2138fcfc0bf"},
    "selection": {"start_index": 0, "shuffle_seed": 0, "max_samples": None, "min_prompt_tokens": None,
                  "max_prompt_tokens": None},
    "generation": {"max_new_tokens": 32, "text_temperature": 0.2},
    "wandb": {"enabled": True, "project": "mllm-shap", "entity": None, "group": None, "tags": []},
    "shap": {"mode": "CONTEXTUAL", "normalizer": "AbsSumNormalizer", "reducer": "MeanReducer",
             "similarity": "TfIdfCosineSimilarity"},
    "explainer_type": "limited_mc",
    "hierarchical_shap_type": "limited_neyman",
    "importance_min_fractions": [0.1],
}

# Each hierarchical sweep: JSON name (nested block; flat form is "hierarchical_" + name) -> our shap key.
HIER_FIELDS = ("ks", "shap_type", "shap_num_samples", "shap_fractions", "first_layer_type",
               "first_layer_num_samples", "first_layer_fractions", "use_importance_sampling",
               "importance_min_fractions")
# Names from the original's own vocabulary (its spec.json) that its config parser never read.
HIER_IGNORED = {"k": "ks", "shap_fraction": "shap_fractions", "first_layer_fraction": "first_layer_fractions",
                "importance_min_fraction": "importance_min_fractions", "mode": None}
