"""mllm_shapx: Shapley-value explanations of chat-model answers, as a resumable Hydra application."""

__version__ = "0.1.0"
