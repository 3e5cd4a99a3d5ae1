"""The tuned lens: trained by gradient descent on KL to the final distribution, or read from a checkpoint.

Training (Belrose et al. 2023) minimises, per row r, ``KL(p_L ‖ softmax(W_U norm_f(h_r M_r + b_r)))``
over corpus tokens. It starts from the linear shortcut when one is given (the least-squares
answer to a nearby question, so the descent only has to correct it for the KL), else from
the identity (the logit lens). Every step decodes the full vocabulary for each token and
row it trains on, which is the whole cost: on a CPU, a few hundred steps take minutes.

A checkpoint of the ``tuned-lens`` package is a folder with ``config.json`` (``d_model``,
``num_hidden_layers``, ...) and ``params.pt``: translator i (keys ``i.weight`` [d, d],
``i.bias`` [d]) reads hidden state i (0: the embeddings) as ``h + h Wᵀ + b``. The file is
read with ``torch.load(weights_only=True)`` (tensors only: no pickled code runs), or
``params.safetensors`` if present. Older checkpoints name the embeddings' translator
``input_translator`` and the others ``layer_translators.i`` (for hidden state i + 1).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..errors import LensError
from ..jobs import checkpoint
from ..options import Progress
from .affine import AffineLens, content_id
from .collect import batches, residual_rows
from .corpus import Corpus

DEFAULT_STEPS = 100
DEFAULT_LR = 1e-4  # from the linear shortcut: larger steps undo its fit in the late layers
ROWS_PER_STEP = 4  # rows trained on in one step, drawn at random
TOKENS_PER_STEP = 128


def _kl_loss(adapter, rows: torch.Tensor, p_log_final: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
             which: torch.Tensor) -> torch.Tensor:
    """Mean over the chosen rows and tokens of KL(p_L ‖ p_row) through the rows' maps."""
    x = torch.baddbmm(b[which].unsqueeze(1), rows[which], W[which])  # [k, n, d]
    logq = torch.log_softmax(adapter.logits(x).float(), -1)
    p = p_log_final.exp()
    return (p * (p_log_final - logq)).sum(-1).mean()


def train_tuned(engine, corpus: Corpus, init: AffineLens | None = None, steps: int = DEFAULT_STEPS,
                lr: float = DEFAULT_LR, seed: int = 0, progress: Progress | None = None) -> AffineLens:
    """A tuned lens trained for ``steps`` steps of Adam on ``corpus`` (cycled as needed)."""
    adapter = engine.adapter
    adapter.require_lm_head("a fitted lens does not apply")
    if not isinstance(steps, int) or not 1 <= steps <= 100_000:
        raise LensError(f"steps must be a whole number from 1 to 100000, not {steps!r}")
    L, d = adapter.n_layers, adapter.d_model
    if init is not None:
        W0, b0 = init.weight.clone(), init.bias.clone()
    else:
        W0, b0 = torch.eye(d).repeat(L, 1, 1), torch.zeros(L, d)
    W = W0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.Adam([W, b], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    step, losses = 0, []
    while step < steps:
        for group in batches(corpus.chunks, 8):
            checkpoint()
            rows = residual_rows(engine, group)  # [L+1, N, d]
            with torch.no_grad():
                p_log_final = torch.log_softmax(adapter.readout(rows[-1]).float(), -1)
            n = rows.shape[1]
            for _ in range(max(1, n // TOKENS_PER_STEP)):
                idx = torch.randperm(n, generator=gen)[:TOKENS_PER_STEP]
                which = torch.randperm(L, generator=gen)[:ROWS_PER_STEP]
                loss = _kl_loss(adapter, rows[:L, idx], p_log_final[idx], W, b, which)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress is not None:
                    progress(min(step / steps, 0.99), f"tuned lens: step {step} of {steps}, KL {losses[-1]:.3f}")
                if step >= steps:
                    break
            if step >= steps:
                break
    seconds = time.perf_counter() - t0
    weight, bias = W.detach().contiguous(), b.detach().contiguous()
    if progress is not None:
        progress(1.0, f"tuned lens trained for {steps} steps in {seconds:.0f} s")
    meta = {"id": content_id(weight, bias), "source": "trained", "corpus": corpus.name,
            "corpus_digest": corpus.digest, "tokens": corpus.n_tokens, "steps": steps, "lr": lr,
            "start": "linear" if init is not None else "identity", "seconds": round(seconds, 1),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}
    return AffineLens("tuned", weight, bias, meta)


def _read_params(folder: Path) -> dict[str, torch.Tensor]:
    st, pt = folder / "params.safetensors", folder / "params.pt"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as exc:
            raise LensError(f"cannot read {st}: {exc}") from None
    if not pt.is_file():
        raise LensError(f"{folder} holds no params.pt or params.safetensors: not a tuned-lens checkpoint")
    try:
        state = torch.load(str(pt), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled objects beyond plain tensors are refused, not run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LensError(f"cannot read {pt} as plain tensors ({first[:200]}): only tensor files are loaded") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LensError(f"{pt} is not a dictionary of tensors: not a tuned-lens checkpoint")
    return state


def _translators(state: dict[str, torch.Tensor]) -> dict[int, tuple[torch.Tensor, torch.Tensor | None]]:
    """Hidden-state index -> (weight [d, d] as in nn.Linear, bias), in either key layout."""
    out: dict[int, tuple] = {}
    for key, value in state.items():
        name, _, part = key.rpartition(".")
        if part not in ("weight", "bias"):
            continue
        if name == "input_translator":
            index = 0
        elif name.startswith("layer_translators."):
            index = int(name.split(".")[1]) + 1
        elif name.isdigit():
            index = int(name)
        else:
            continue  # the old format's unembedding and norm: the model's own are used
        w, bias = out.get(index, (None, None))
        out[index] = (value, bias) if part == "weight" else (w, value)
    return out


def read_tuned_checkpoint(folder: str | Path, n_layers: int, d_model: int) -> AffineLens:
    """A tuned-lens checkpoint folder as an AffineLens for a model of ``n_layers`` and ``d_model``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise LensError(f"no such folder: {folder} (a tuned-lens checkpoint is a folder with config.json and params.pt)")
    config: dict = {}
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise LensError(f"cannot read {folder / 'config.json'}: {exc}") from None
    cfg_d = config.get("d_model")
    cfg_l = config.get("num_hidden_layers", config.get("num_layers"))
    if cfg_d is not None and cfg_d != d_model or cfg_l is not None and cfg_l != n_layers:
        raise LensError(f"the checkpoint is for a model with {cfg_l} layers of width {cfg_d}; this model has "
                        f"{n_layers} layers of width {d_model}")
    found = _translators(_read_params(folder))
    if not found:
        raise LensError(f"{folder}: the parameter file holds no translators")
    weight = torch.eye(d_model).repeat(n_layers, 1, 1)
    bias = torch.zeros(n_layers, d_model)
    for index, (w, b) in found.items():
        if not 0 <= index < n_layers:
            raise LensError(f"{folder}: a translator for hidden state {index}, but this model has 0..{n_layers - 1}")
        if w is None or tuple(w.shape) != (d_model, d_model) or b is not None and tuple(b.shape) != (d_model,):
            raise LensError(f"{folder}: translator {index} is not a {d_model}×{d_model} linear map")
        weight[index] += w.float().T  # h + h Wᵀ  =  h (I + Wᵀ)
        if b is not None:
            bias[index] = b.float()
    meta = {"id": content_id(weight, bias), "source": "checkpoint", "checkpoint": str(folder.resolve()),
            "base_model": config.get("base_model_name_or_path"), "translators": len(found)}
    return AffineLens("tuned", weight.contiguous(), bias.contiguous(), meta)
