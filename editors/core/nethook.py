"""Forward hooks to read module inputs/outputs and to stop a forward pass early.

Decoder blocks return a tensor in recent transformers and a tuple ``(hidden, ...)`` in older ones;
``hidden_of``/``replace_hidden`` hide that difference (the reference indexes ``output[0]``, which is
batch row 0 on new versions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import nn

from editors.core.model_spec import get_module


class StopForward(Exception):
    """Raised by a hook to abort a forward pass once the last needed module has run."""


def hidden_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def replace_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def capture(
    model: nn.Module, names: Sequence[str], *, inputs: bool = False, stop_after: str | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each named module's output (or first input) during the forwards run inside the block.

    ``stop_after``: raise StopForward after that module ran, so layers above are never computed
    (used for keys and covariance, which need only the lower layers). Callers run the forward via
    ``run_until_stop``.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str) -> Callable:
        def hook(module, args, kwargs, output):
            x = args[0] if args else next(iter(kwargs.values()))
            store[name] = (x if inputs else hidden_of(output)).detach()
            if name == stop_after:
                raise StopForward

        return hook

    try:
        for n in names:
            handles.append(get_module(model, n).register_forward_hook(make(n), with_kwargs=True))
        yield store
    finally:
        for h in handles:
            h.remove()


def run_until_stop(model: nn.Module, **batch) -> None:
    """Run ``model(**batch)`` and swallow the StopForward a capture hook raised."""
    with suppress(StopForward):
        model(**batch)


@contextmanager
def start_at_block(model: nn.Module, blocks: Sequence[str]) -> Iterator[None]:
    """Make the named blocks identities for the forwards inside the context.

    With ``body(inputs_embeds=h_L)``, where h_L is the cached hidden state entering block L and
    ``blocks`` are blocks 0..L−1, the forward computes only blocks L and above, with the same masks and
    positions as the full forward (the decoder still builds them from the input's shape). Only for
    architectures whose ``ModelSpec.embeds_enter_blocks`` is True. On a model sharded by a device
    map the skipped blocks pass ``h`` on untouched and block L's hook moves it to its device.
    """
    mods = [get_module(model, n) for n in blocks]
    # accelerate's device-map hooks live in an instance ``forward`` too: put back what was there.
    saved = [m.__dict__.get("forward") for m in mods]
    for m in mods:
        m.forward = _identity  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for m, fwd in zip(mods, saved):
            if fwd is None:
                del m.forward
            else:
                m.forward = fwd


def _identity(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return hidden_states


@contextmanager
def edit_output(model: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace a module's output hidden state h by ``fn(h)`` for the forwards inside the block."""

    def hook(module, args, output):
        return replace_hidden(output, fn(hidden_of(output)))

    handle = get_module(model, name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
