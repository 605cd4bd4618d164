"""Target values z: the hidden state that makes the model say the new target (reference §1.6).

For each request a free vector δ is added to a module's output at the subject's last token of
every rewriting prompt; δ is optimised with Adam to maximise p(target_new) under a KL penalty on
"{subject} is a" and a norm penalty, and clamped to a ball around the original state h₀.
z = h₀ + δ.

All requests of a batch are optimised together (one δ per request, one Adam over the stacked δs):
transformer rows never interact and Adam is element-wise, so this is the per-request loop's math,
done in one forward/backward per step. A request that meets the early-stopping rule leaves the
batch and its δ is frozen, exactly as if its own loop had stopped.

The blocks below the one where δ is added do not depend on δ: their output is computed once, in the
first pass, and every optimisation step runs only the blocks from there up (``reuse_lower_layers``;
the reference runs the whole model at each of its 25 steps per request). Logits are computed only at
the positions a loss reads.

With ``v_compute_dtype=bfloat16`` the forward and backward passes run under ``torch.autocast``
(matrix products in bfloat16; δ, the weights, the losses and Adam stay float32). On a CPU with AMX
(Sapphire Rapids and later) a bfloat16 matmul is ~9× a float32 one, and on a GPU the tensor cores
do the same; z then differs from the float32 one at bfloat16 rounding, so it is an option, chosen
per study on the tuning split (docs/tuning.md), never a silent default.

On a model sharded by a device map, the prompts are on the embedding's device, and δ, the losses
and their bookkeeping on the LM head's (where the logits are); δ moves to the hidden state it is
added to, and states read from other blocks move to the LM head's device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from editors.core.footprint import Footprint, PlanItem, ShapeInfo, Z
from editors.core.keys import fill
from editors.core.model_spec import (
    ModelSpec,
    block_index,
    get_module,
    hidden_size,
    input_device,
    num_layers,
    output_device,
)
from editors.core.nethook import capture, edit_output, start_at_block
from editors.core.progress import progress
from editors.core.requests import EditRequest
from editors.core.templates import STARTERS
from editors.core.tokens import Tokenizer, encode, lookup_index, target_ids

log = logging.getLogger(__name__)
KL_PROMPT = "{} is a"
EARLY_STOP_LOSS = 5e-2
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def check_compute_dtype(name: str) -> None:
    """The knob ``v_compute_dtype`` names a dtype the z optimisation can run its passes in."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"v_compute_dtype={name!r} must be one of {sorted(COMPUTE_DTYPES)}")


@dataclass(frozen=True)
class ValueOptions:
    """Knobs of the z optimisation (names as in the reference hparams)."""

    v_num_grad_steps: int
    v_lr: float
    v_weight_decay: float
    clamp_norm_factor: float
    kl_factor: float
    fact_token: str = "subject_last"
    reuse_lower_layers: bool = True
    max_rows: int = 0  # rows per forward/backward (0: all); gradients of the chunks add up exactly
    compute_dtype: str = "float32"  # of the forward/backward passes (autocast when not float32)

    @property
    def chunked(self) -> bool:
        return self.max_rows > 0

    @classmethod
    def from_hparams(cls, hp) -> ValueOptions:
        """The value knobs of any editor hparams that carry the reference's field names."""
        return cls(
            hp.v_num_grad_steps,
            hp.v_lr,
            hp.v_weight_decay,
            hp.clamp_norm_factor,
            hp.kl_factor,
            hp.fact_token,
            max_rows=getattr(hp, "v_max_rows", 0),
            compute_dtype=getattr(hp, "v_compute_dtype", "float32"),
        )


def n_templates(length_params: Sequence[Sequence[int]]) -> int:
    """Context templates of ``[[length, n], ...]``: the bare prompt + n // 5 per starter for each pair
    (editors/core/templates.py), e.g. MEMIT's [[10, 5]] → 6, ROME's [[5, 10], [10, 10]] → 21."""
    per = len(STARTERS)
    return 1 + sum(max(1, n // per) * per for _, n in length_params)


def values_footprint(
    shape: ShapeInfo,
    *,
    requests: int,
    template_params: Sequence[Sequence[int]],
    max_rows: int = 0,
    inside_block: bool = False,
    compute_dtype: str = "float32",
    setting: str,
) -> Footprint:
    """Activations and logits of the z optimisation (``compute_target_values``), on the device.

    Rows: ``requests`` optimised together (MEMIT family: the batch; ROME: one at a time), one row
    per context template plus the KL prompt; with ``max_rows`` (``v_max_rows``) z runs in chunks of
    whole requests and the peak is one chunk's. δ is added at the output of the last edited block L
    (``inside_block``: at its MLP, ROME), so autograd keeps the tensors of the blocks above it for
    ∂loss/∂δ; the blocks below run once and their output (T × d_model) is reused. Per token and
    block a LLaMA-style decoder with frozen weights keeps about b·(2·d_model + 2·kv + 3·d_ff) +
    4·3·d_model bytes (q and the attention output, k and v, the MLP's gate, up and act(gate);
    RMSNorm's float32 upcasts), measured with saved-tensor hooks on transformers' Llama blocks (the
    formula is 5-10 % above). Add one block's forward/backward temporaries, b·(3·d_ff + 4·d_model)
    per token, and the final norm. Logits (float32, plus their log-softmax and its gradient) exist
    only at the target positions and the KL rows. Sequence length: the longest template + the
    dataset's longest prompt and target (``shape.prompt_tokens``). On a CPU check (a 12-block
    LLaMA, 20 requests) the estimate was 5-15 % above the measured peak.
    """
    n_tpl = n_templates(template_params)
    if max_rows:
        requests = min(requests, max(1, max_rows // (n_tpl + 1)))
    max_tpl = max(length for length, _ in template_params)
    prompt, target_max, target_typ = shape.prompt_tokens
    seq = max_tpl + prompt + target_max
    rows = requests * (n_tpl + 1)
    tokens = rows * seq
    grad_blocks = shape.n_layers - shape.layers[-1] - (0 if inside_block else 1)
    b, d, ff = shape.dtype_bytes, shape.d_model, shape.d_ff
    per_block = b * (2 * d + 2 * shape.kv_dim + 3 * ff) + 12 * d
    acts = tokens * (
        grad_blocks * per_block
        + b * (3 * ff + 4 * d)  # one block's temporaries
        + d * (4 + b)  # final norm
        + 2 * d * b  # the cached entry state and the first pass's captured output
    )
    slots = requests * (n_tpl * target_typ + 1)
    logits = slots * shape.vocab * (b + 12) + requests * shape.vocab * 4
    copies = []
    if compute_dtype != "float32":  # linear_weights_cast: on a CPU device, every block's linear weights
        low = COMPUTE_DTYPES[compute_dtype].itemsize
        per = 2 * d * d + 2 * d * shape.kv_dim + 3 * d * ff
        copies.append(
            PlanItem(
                f"z-optimisation: {compute_dtype} copies of the blocks' linear weights (CPU)",
                "device",
                shape.n_layers * per * low,
                f"{shape.n_layers} blocks × {per:,} params × {low} B",
                (Z,),
                "set editor.v_compute_dtype=float32",
            )
        )
    return Footprint(
        [
            *copies,
            PlanItem(
                "z-optimisation activations",
                "device",
                acts,
                f"{rows:,} rows ({requests} × {n_tpl + 1}) × ~{seq} tokens × {grad_blocks} blocks × "
                f"{per_block:,} B/token",
                (Z,),
                setting,
            ),
            PlanItem(
                "z-optimisation logits at target positions",
                "device",
                logits,
                f"{slots:,} positions × {shape.vocab:,} vocab × ({b} + 12) B",
                (Z,),
                setting,
            ),
        ]
    )


@contextmanager
def lower_precision(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to ``dtype`` (nothing for float32). On a CPU, attention also takes the math kernel:
    PyTorch's fused CPU attention is slow backwards in bfloat16 (~16x its float32 time, measured on
    SmolLM2-135M), while the math kernel's matrix products use AMX like the rest."""
    if dtype == torch.float32:
        yield
        return
    kernel = sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()
    with torch.autocast(device.type, dtype=dtype), kernel:
        yield


@dataclass
class _Rows:
    """The encoded prompts of all requests: ``per`` rows per request, the last one the KL prompt.

    Target-token slots are flattened once: slot s reads row ``slot_row[s]`` at ``slot_pos[s]`` and
    scores token ``slot_tok[s]`` with weight 1/(T·#templates), so the NLL of every request is one
    gather, one LM-head matmul and one index_add.
    """

    batch: dict[str, torch.Tensor]
    lookup: torch.Tensor  # (rows,) fact-token position
    request: torch.Tensor  # (rows,) request index
    per: int
    slot_row: torch.Tensor
    slot_pos: torch.Tensor
    slot_tok: torch.Tensor
    slot_weight: torch.Tensor


def _build_rows(tok: Tokenizer, requests, templates, targets, fact_token, device, in_dev) -> _Rows:
    """Prompts on ``in_dev`` (the embedding's device), the row bookkeeping on ``device``."""
    texts, lookup, owner = [], [], []
    for i, (r, tgt) in enumerate(zip(requests, targets)):
        prefix = tok.decode(tgt[:-1])
        for tpl in [*(fill(t, r.prompt) + prefix for t in templates), KL_PROMPT]:
            texts.append(fill(tpl, r.subject))
            lookup.append(lookup_index(tok, tpl, r.subject, fact_token))
            owner.append(i)
    batch = encode(tok, texts, in_dev)
    lengths = batch["attention_mask"].sum(1).tolist()
    per = len(templates) + 1
    slot_row, slot_pos, slot_tok, slot_w = [], [], [], []
    for row, (i, e) in enumerate(zip(owner, lengths)):
        if row % per == per - 1:
            continue  # the KL prompt has no target
        tgt = targets[i]
        # Labels sit at the predicting positions: the input holds the prompt and all but the last
        # target token, so position e − T + t predicts target token t.
        for t, token in enumerate(tgt):
            slot_row.append(row)
            slot_pos.append(e - len(tgt) + t)
            slot_tok.append(token)
            slot_w.append(1.0 / (len(tgt) * (per - 1)))
    as_t = lambda x, **kw: torch.tensor(x, device=device, **kw)  # noqa: E731
    return _Rows(
        batch=batch,
        lookup=as_t(lookup),
        request=as_t(owner),
        per=per,
        slot_row=as_t(slot_row),
        slot_pos=as_t(slot_pos),
        slot_tok=as_t(slot_tok),
        slot_weight=as_t(slot_w, dtype=torch.float32),
    )


def _logits(model: nn.Module, spec: ModelSpec, hidden: torch.Tensor) -> torch.Tensor:
    """LM-head logits (float32) for selected final hidden states only (saves the vocab matmul)."""
    logits = get_module(model, spec.lm_head)(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


@contextmanager
def linear_weights_cast(blocks: Sequence[nn.Module], dtype: torch.dtype) -> Iterator[None]:
    """The blocks' ``nn.Linear`` weights cast to ``dtype`` once for the whole optimisation, not at
    every call: exactly the values autocast would make (the same rounding of the same tensors), but
    on a CPU those per-call casts were a quarter of a bfloat16 step (SmolLM2-135M, profiled). The
    float32 tensors themselves are put back on exit, untouched. Costs a ``dtype`` copy of the
    blocks' linear weights while it lasts (the plan's "z-optimisation: bfloat16 weight copies")."""
    saved: list[tuple[nn.Linear, torch.Tensor]] = []
    try:
        for block in blocks:
            for mod in block.modules():
                if isinstance(mod, nn.Linear):
                    saved.append((mod, mod.weight.data))
                    mod.weight.data = mod.weight.data.to(dtype)
        yield
    finally:
        for mod, weight in saved:
            mod.weight.data = weight


def cast_blocks(model: nn.Module, spec: ModelSpec, dtype: torch.dtype) -> list[nn.Module]:
    """The blocks whose linear weights the optimisation casts once: all of them for a lower-precision
    run on a CPU (where autocast's per-call casts cost a quarter of a step), none otherwise."""
    if dtype == torch.float32 or output_device(model).type != "cpu":
        return []
    return [get_module(model, spec.block_name(layer)) for layer in range(num_layers(model))]


def compute_target_values(
    model: nn.Module,
    tok: Tokenizer,
    spec: ModelSpec,
    requests: Sequence[EditRequest],
    module: str,
    templates: Sequence[str],
    opts: ValueOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise z for every request. Returns (z, h₀), each (n × d_model) float32.

    ``module``: where δ is added (MEMIT family: the block at the last edited layer; ROME: the MLP).
    ``templates``: flat list of context templates, each with one ``{}`` for the prompt.
    """
    low = COMPUTE_DTYPES[opts.compute_dtype]
    with linear_weights_cast(cast_blocks(model, spec, low), low):
        device = output_device(model)  # of the logits: δ, losses and row bookkeeping live there
        n, d = len(requests), hidden_size(model)
        targets = [target_ids(tok, r.target) for r in requests]
        in_dev = input_device(model)
        rows = _build_rows(tok, requests, templates, targets, opts.fact_token, device, in_dev)
        body = get_module(model, spec.body)
        start = block_index(spec, module, num_layers(model))
        reuse = opts.reuse_lower_layers and spec.embeds_enter_blocks and start > 0
        lower = [spec.block_name(layer) for layer in range(start)]
        entry: dict[str, torch.Tensor] = {}  # the hidden state entering block ``start``, from the first pass

        delta = torch.zeros(n, d, device=device, requires_grad=True)
        active = torch.ones(n, dtype=torch.bool, device=device)

        def add_delta(sel_rows: torch.Tensor):
            def fn(h: torch.Tensor) -> torch.Tensor:
                h = h.clone()
                r = torch.arange(len(sel_rows), device=h.device)
                pos = rows.lookup[sel_rows].to(h.device)
                h[r, pos] = (h[r, pos].float() + delta[rows.request[sel_rows]].to(h.device)).to(h.dtype)
                return h

            return fn

        def forward(sel_rows: torch.Tensor):
            """Final hidden states of the selected rows, trimmed to their longest sequence."""
            mask = rows.batch["attention_mask"][sel_rows.to(in_dev)]
            width = int(mask.sum(1).max())
            mask = mask[:, :width]
            with edit_output(model, module, add_delta(sel_rows)):
                if entry:  # right padding: the first ``width`` positions do not depend on the rest
                    h_in = entry[spec.block_name(start)]
                    h_in = h_in[sel_rows.to(h_in.device), :width]
                    with start_at_block(model, lower):
                        hidden = body(inputs_embeds=h_in, attention_mask=mask).last_hidden_state
                else:
                    ids = rows.batch["input_ids"][sel_rows.to(in_dev), :width]
                    hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            return hidden.to(device)

        def losses(sel_rows: torch.Tensor):
            """Per-request NLL (n,), and the KL-prompt log-probs of the selected requests."""
            with lower_precision(device, low):
                hidden = forward(sel_rows).float()
            local = torch.full((len(rows.request),), -1, device=device)
            local[sel_rows] = torch.arange(len(sel_rows), device=device)
            keep = local[rows.slot_row] >= 0
            h = hidden[local[rows.slot_row[keep]], rows.slot_pos[keep]]
            logp = torch.log_softmax(_logits(model, spec, h), -1)
            tok_logp = logp.gather(1, rows.slot_tok[keep, None]).squeeze(1)
            slot_req = rows.request[rows.slot_row[keep]]
            nll = torch.zeros(n, device=device).index_add(0, slot_req, -tok_logp * rows.slot_weight[keep])
            is_kl = (sel_rows % rows.per) == rows.per - 1
            kl_local = torch.nonzero(is_kl).flatten()
            kl_h = hidden[kl_local, rows.lookup[sel_rows[kl_local]]]
            return nll, torch.log_softmax(_logits(model, spec, kl_h), -1), rows.request[sel_rows[kl_local]]

        # First pass with δ = 0: h₀ (target_init, at prompt 0 of each request) and the initial KL distribution.
        all_rows = torch.arange(len(rows.request), device=device)
        with (
            torch.no_grad(),
            capture(model, [module]) as store,
            capture(model, [spec.block_name(start)] if reuse else [], inputs=True) as entering,
        ):
            _, kl_init_all, _ = losses(all_rows)
        entry.update(entering)
        first = all_rows[all_rows % rows.per == 0]
        h0 = store[module].to(device)[first, rows.lookup[first]].float()
        h0_norm = h0.norm(dim=1)

        # Requests per forward/backward: all, or as many whole requests as ``max_rows`` rows hold. Rows
        # never interact, so the chunks' gradients add up to the all-at-once gradient (activation memory
        # of a 100-request LLaMA3-8B batch in float32 is > 100 GB; chunks bound it).
        per_chunk = max(1, opts.max_rows // rows.per) if opts.chunked else n
        opt = torch.optim.Adam([delta], lr=opts.v_lr)
        # one update per step (all requests' forward/backward), shown once a batch's optimisation lasts 10 s
        bar = progress(
            opts.v_num_grad_steps, f"z optimisation ({n} requests)", "step", leave=False, min_s=10.0
        )
        with bar:
            for it in range(opts.v_num_grad_steps):
                last = it == opts.v_num_grad_steps - 1
                opt.zero_grad()
                live = torch.nonzero(active).flatten()
                step_loss = torch.zeros(n, device=device)
                for c0 in range(0, len(live), per_chunk):
                    mine = torch.zeros(n, dtype=torch.bool, device=device)
                    mine[live[c0 : c0 + per_chunk]] = True
                    sel = all_rows[mine[rows.request]]
                    nll, kl_logp, kl_req = losses(sel)
                    kl_each = F.kl_div(kl_init_all[kl_req], kl_logp, log_target=True, reduction="none").sum(
                        -1
                    )
                    kl = torch.zeros(n, device=device).index_add(0, kl_req, opts.kl_factor * kl_each)
                    wd = opts.v_weight_decay * delta.norm(dim=1) / h0_norm**2
                    loss = nll + kl + wd
                    # Early stop per request (before stepping), as the reference's per-request loop does.
                    log.debug("z step %d: nll %s kl %s wd %s", it, nll.tolist(), kl.tolist(), wd.tolist())
                    step_loss = torch.where(mine, loss.detach(), step_loss)
                    active = active & ~(mine & (loss.detach() < EARLY_STOP_LOSS))
                    if not last and bool((mine & active).any()):
                        loss[mine & active].sum().backward()
                if bar.mode != "off":  # one sync per step, next to the ``active.any()`` one below
                    done = int((~active).sum())
                    bar.set_postfix(
                        done=f"{done}/{n}", loss=float(step_loss[live].mean()) if len(live) else 0.0
                    )
                bar.update(1)
                if last or not bool(active.any()):
                    break
                frozen = delta.detach()[~active].clone()
                opt.step()
                with torch.no_grad():
                    delta[~active] = frozen
                    max_norm = opts.clamp_norm_factor * h0_norm
                    norms = delta.norm(dim=1)
                    scale = torch.where(
                        norms > max_norm, max_norm / norms.clamp_min(1e-12), torch.ones_like(norms)
                    )
                    delta.mul_(torch.where(active, scale, torch.ones_like(scale))[:, None])
        return (h0 + delta.detach()), h0
