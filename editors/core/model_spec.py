"""Where things live inside each supported architecture.

Editors address modules through a ``ModelSpec`` instead of hard-coding names, so one editor runs
on LLaMA, Qwen2, Gemma3 and GPT-2 alike. Detection uses ``config.model_type``, never model-name
substrings (the reference keys LLaMA handling on ``"llama" in _name_or_path``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    """The model's architecture has no ModelSpec."""


@dataclass(frozen=True)
class ModelSpec:
    """Module templates of one architecture (``{}`` = layer index).

    Attributes:
        arch: family name ("llama", "qwen2", "gemma3", "gpt2").
        body: the decoder stack without the LM head ("model" / "transformer").
        block: one decoder block; its output is the residual stream z is defined on.
        mlp: the whole MLP (ROME adds its δ to this module's output).
        mlp_out: the edited matrix, the MLP output projection (keys are its input).
        final_norm: norm before the LM head.
        lm_head: the unembedding.
        conv1d: True when the edited weight is stored (in × out) (GPT-2 ``Conv1D``); all edit math
            uses the nn.Linear (out × in) layout and converts at read/write time.
        embeds_enter_blocks: True when ``body(inputs_embeds=h)`` feeds ``h`` unchanged to block 0 and
            every block returns its hidden state as a tensor (transformers ≥ 5 decoders; GPT-2 adds
            position embeddings first). Then a forward can start at block L from a cached state by
            making blocks 0..L−1 identities (``editors.core.nethook.start_at_block``).
        post_mlp_norm: a norm the MLP output passes before it is added to the residual stream
            (Gemma 2/3's ``post_feedforward_layernorm``), or None. The MEMIT family's residual
            shares are changes of the residual stream; where this is set they are mapped through
            the norm before the solve (editors/core/post_norm.py; docs/tuning.md, "Gemma-3-270M").
    """

    arch: str
    body: str
    block: str
    mlp: str
    mlp_out: str
    final_norm: str
    lm_head: str
    conv1d: bool = False
    embeds_enter_blocks: bool = False
    post_mlp_norm: str | None = None

    def block_name(self, layer: int) -> str:
        return self.block.format(layer)

    def mlp_name(self, layer: int) -> str:
        return self.mlp.format(layer)

    def weight_module_name(self, layer: int) -> str:
        return self.mlp_out.format(layer)

    def weight_name(self, layer: int) -> str:
        """The parameter name of the edited matrix at ``layer`` (as in ``model.named_parameters``)."""
        return self.mlp_out.format(layer) + ".weight"


_DECODER: dict[str, Any] = dict(
    body="model",
    block="model.layers.{}",
    mlp="model.layers.{}.mlp",
    mlp_out="model.layers.{}.mlp.down_proj",
    final_norm="model.norm",
    lm_head="lm_head",
    embeds_enter_blocks=True,
)
SPECS: dict[str, ModelSpec] = {
    "llama": ModelSpec(arch="llama", **_DECODER),
    "mistral": ModelSpec(arch="mistral", **_DECODER),
    "qwen2": ModelSpec(arch="qwen2", **_DECODER),
    "qwen3": ModelSpec(arch="qwen3", **_DECODER),
    "gemma3_text": ModelSpec(
        arch="gemma3", post_mlp_norm="model.layers.{}.post_feedforward_layernorm", **_DECODER
    ),
    "gemma2": ModelSpec(
        arch="gemma2", post_mlp_norm="model.layers.{}.post_feedforward_layernorm", **_DECODER
    ),
    "gpt2": ModelSpec(
        arch="gpt2",
        body="transformer",
        block="transformer.h.{}",
        mlp="transformer.h.{}.mlp",
        mlp_out="transformer.h.{}.mlp.c_proj",
        final_norm="transformer.ln_f",
        lm_head="lm_head",
        conv1d=True,
    ),
}


def spec_for(model: nn.Module) -> ModelSpec:
    """The ModelSpec of a Hugging Face causal LM, from ``config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SPECS:
        raise UnsupportedModelError(
            f"no ModelSpec for model_type={model_type!r}; supported: {', '.join(sorted(SPECS))} "
            "(add one to editors/core/model_spec.py::SPECS)"
        )
    return SPECS[model_type]


def block_index(spec: ModelSpec, module: str, n_layers: int) -> int:
    """The index of the decoder block that holds ``module`` (the block itself or a submodule)."""
    for layer in range(n_layers):
        name = spec.block_name(layer)
        if module == name or module.startswith(name + "."):
            return layer
    raise UnsupportedModelError(f"module {module!r} is not inside any block {spec.block!r}")


def get_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule`` with an error that names the template to fix."""
    try:
        return model.get_submodule(name)
    except AttributeError as e:
        raise UnsupportedModelError(f"module {name!r} not found in {type(model).__name__}: {e}") from None


def num_layers(model: nn.Module) -> int:
    cfg: Any = model.config
    return int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layer)


def hidden_size(model: nn.Module) -> int:
    cfg: Any = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


# Placement. A model may be spread over several devices by accelerate (``model.device_map``): each
# module then computes on its own device, and hooks move a module's inputs there. Edit math follows
# the same rule: a tensor that meets a layer's weight lives on that weight's device, inputs go to
# the embedding's device, and logits come back on the LM head's device. A model on one device
# answers the same device everywhere.


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: the execution device of its accelerate hook when a device map
    placed it (also right for offloaded or tied weights, whose stored tensor is elsewhere), else the
    device of its first parameter (or buffer)."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or [hook]:  # a SequentialHook holds several
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(dev)  # accelerate allows an int (a CUDA index)
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def input_device(model: nn.Module) -> torch.device:
    """Where input ids go: the device of the token embedding (the first module of a forward)."""
    embedding = _embedding(model, "get_input_embeddings")
    return module_device(embedding if embedding is not None else model)


def output_device(model: nn.Module) -> torch.device:
    """Where logits come out: the device of the LM head (the last module of a forward)."""
    head = _embedding(model, "get_output_embeddings")
    return module_device(head) if head is not None else input_device(model)


def _embedding(model: nn.Module, getter: str) -> nn.Module | None:
    try:
        return getattr(model, getter)()
    except (AttributeError, NotImplementedError):  # not a Hugging Face model, or one without it
        return None


def model_devices(model: nn.Module) -> list[torch.device]:
    """Every device that holds part of the model (one for a model that is not sharded)."""
    found = {p.device for p in model.parameters() if p.device.type != "meta"}
    return sorted(found, key=str) or [input_device(model)]


def offloaded_value(module: nn.Module, name: str) -> torch.Tensor | None:
    """The stored value of ``module.<name>`` when accelerate offloaded it (the parameter is on the
    meta device, the value in the hook's ``weights_map``, on the CPU or on disk); None otherwise."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or [hook]:
        weights = getattr(h, "weights_map", None)
        if weights is not None and name in weights:
            return weights[name]
    return None
