"""Load a model and its tokenizer (HF id, local directory, GGUF, tiny random from a config)."""

from sphere.models.loading import load_model, model_id

__all__ = ["load_model", "model_id"]
