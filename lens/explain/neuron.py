"""One MLP neuron at one position with its work shown: the MLP's input through its norm, the gate (or
pre-activation) as a dot product, the up projection, the activation, and the neuron's write into the residual
stream (its activation times its row of the down projection).

The MLP's input (``mlp_in.l``), the neurons' activations (``mlp_act.l``) and the MLP's output (``mlp_out.l``) are
read through the engine; the steps between are the block's own weights written out in numpy, and the activation
they give is shown beside the model's own (``shown_act``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.checks import check_position
from ..errors import LensError
from ..model.adapters import linear_in_out
from .common import activation, apply_norm, as64, largest, norm_params, shown
from .options import NeuronAtOptions
from .results import NeuronExplanation

AGREE = 1e-3  # as in attention.py: beyond float rounding, the steps are refused, not shown wrong


def n_neurons(adapter) -> int:
    return int(adapter.down_projection(0).shape[0]) if adapter.down_proj else 0


def explain_neuron(engine, tokenizer, model_name: str, ids: list[int], tokens: list[str],
                   options: NeuronAtOptions) -> NeuronExplanation:
    a = engine.adapter
    if not a.down_proj:
        raise LensError(f"{a.model_type} has no neuron sites: {a.routes_unavailable()}")
    if a.mlp_norm[0] is None or a.post_ln:
        raise LensError(f"{a.model_type}'s MLP input is not the normed residual stream of its own: its neurons' "
                        "steps are not written out here")
    if not engine.capabilities.weights_here:
        raise LensError(f"a neuron's steps need its weights beside the pass, which stay {engine.capabilities.where}")
    N = n_neurons(a)
    options.check(a.n_layers, N)
    p = check_position(options.position, len(ids))
    li, j, n = options.layer - 1, options.neuron, options.layer
    out = engine.run(ids, read={f"mlp_in.{n}": [p], f"mlp_act.{n}": [p], f"mlp_out.{n}": [p]}, logits="none")
    h = as64(out.reads[f"mlp_in.{n}"][0, 0])
    kind, scale, bias, eps = norm_params(a.mlp_norm[li], h.shape[0], a.spec.norm_offset)
    x, _, _, rms = apply_norm(h, kind, scale, bias, eps)
    mlp = a.mlp[li]
    config = engine.model.config
    act_name = getattr(config, "hidden_act", None) or getattr(config, "activation_function", None)
    gate_mod, up_mod = getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None)
    if gate_mod is None or up_mod is None:  # a plain MLP: its one projection besides the down projection
        gate_mod, up_mod = _input_projection(mlp, a.down_proj[li]), None
    Wg, bg = linear_in_out(gate_mod)
    w_gate = as64(Wg[:, j])
    gate_bias = 0.0 if bg is None else float(as64(bg[j]))
    up = None
    if up_mod is not None:
        Wu, bu = linear_in_out(up_mod)
        up = float(x @ as64(Wu[:, j])) + (0.0 if bu is None else float(as64(bu[j])))
    gate = float(x @ w_gate) + gate_bias
    a_gate = activation(act_name, gate)
    act = a_gate * up if up is not None else a_gate
    shown_act = float(as64(out.reads[f"mlp_act.{n}"][0, 0])[j])
    if abs(act - shown_act) > AGREE * max(1.0, abs(shown_act)):
        raise LensError(f"{a.model_type}'s MLP computes its neurons otherwise than the steps shown here ({act:.4g} "
                        f"against the model's {shown_act:.4g}): they are not written out for this model")
    w_down = as64(a.down_projection(li)[j])  # [d]
    write = act * w_down
    mlp_out = as64(out.reads[f"mlp_out.{n}"][0, 0])
    dims = largest(x * w_gate, options.dims)
    wdims = largest(write, options.dims)
    promotes = []
    if a.has_lm_head:
        # The tokens the write pushes up, read straight through the unembedding (the final norm's scale folded in).
        W_U = a.unembed.weight.detach()
        direction = a.linearised_final_norm(torch.from_numpy(write.astype(np.float32)).to(W_U.device)[None])[0]
        z = as64(W_U.float() @ direction)
        promotes = [{"token": shown(tokenizer, int(i)), "id": int(i), "logit": float(z[i])}
                    for i in np.argsort(-z, kind="stable")[:8]]
    return NeuronExplanation(
        model=model_name, tokens=list(tokens), layer=n, neuron=j, n_neurons=N, position=p, token=tokens[p],
        gated=up is not None, activation=act_name, norm_kind=kind, input_norm=float(np.linalg.norm(h)), rms=rms,
        normed_norm=float(np.linalg.norm(x)), dims=dims, normed=[float(x[i]) for i in dims],
        gate_weights=[float(w_gate[i]) for i in dims], gate=gate, gate_bias=gate_bias, act_of_gate=a_gate, up=up,
        act=act, shown_act=shown_act, write_norm=float(np.linalg.norm(write)),
        write_dims=wdims, write=[float(write[i]) for i in wdims], mlp_out_norm=float(np.linalg.norm(mlp_out)),
        share=float(write @ mlp_out / max(float(mlp_out @ mlp_out), 1e-30)), promotes=promotes)


def _input_projection(mlp, down):
    """A plain MLP's projection into its neurons: its one linear layer besides the down projection."""
    found = [m for m in mlp.children() if m is not down and (isinstance(m, torch.nn.Linear) or
                                                             type(m).__name__ == "Conv1D")]
    if len(found) != 1:
        raise LensError("this MLP has no single input projection: its neurons' steps are not written out here")
    return found[0]
