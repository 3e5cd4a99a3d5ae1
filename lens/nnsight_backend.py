"""``NnsightBackend``: the same Backend, with every forward pass run as an nnsight trace, here or on NDIF.

nnsight (https://nnsight.net) runs interventions on a model in this process or, with
``remote=True``, on NDIF's shared GPUs, where models too big for a laptop are already
loaded (an API key in ``NDIF_API_KEY``). This backend is LocalBackend with its one
capture (``_capture``) replaced by a trace, so every view is computed by the same
analysis code from the same numbers, and with the logit lens reduced inside the trace:
each row's logits become top-k, entropy, KL, target rank and the next token's loss
where the model runs, so a remote call sends back ``[rows, T, k]``, never
``[rows, T, vocab]``; rollout's attention comes back head-averaged (``[L, T, T]``).

Code inside a trace may run on the server, which has torch and nnsight but not LayerLens:
it uses torch operations and the model's own modules only.

On NDIF the weights are not here: views that read weights beside the forward pass
(routes, patching, generation, fitted lenses, the language of each layer) say so.
"""
from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse

import numpy as np
import torch

from .analysis.early_exit import saturation_rows
from .analysis.logit_lens import _decode_table, resolve_target
from .errors import LensError
from .local_backend import LocalBackend
from .model.tokens import decode_token
from .model.trace import CaptureSpec, Trace, attention_implementation
from .options import LensOptions, Progress
from .results import LogitLensResult

# Backend methods that need the model's weights here (or a generation loop): local execution only.
WEIGHT_METHODS = ("generate", "generation_lens", "generation_attention", "patch", "patched_lens", "ablated_lens",
                  "compare_with", "fit_lens", "contributions", "route_graph", "node_detail", "latent_language")
CONNECT_TIMEOUT_S = 3.0


def _envoy(root, path: str):
    """The nnsight envoy of the submodule at dotted ``path`` (list indices as parts)."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _module_paths(model) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def ndif_ready(host: str | None = None) -> None:
    """Raise a one-line LensError unless an NDIF API key is set and the NDIF host answers a TCP connect
    within a few seconds (so an offline machine fails at once, not after minutes of retries)."""
    if not os.environ.get("NDIF_API_KEY"):
        raise LensError("running on NDIF needs an API key: get one at https://login.ndif.us and set NDIF_API_KEY")
    from nnsight import CONFIG

    url = host or os.environ.get("NDIF_HOST") or CONFIG.API.HOST
    parsed = urlparse(url if "//" in url else "https://" + url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise LensError(f"cannot reach NDIF at {parsed.hostname}:{port} ({exc.strerror or exc}); "
                        "check the network, or run the model on this machine (--backend local)") from None


def ndif_models() -> list[str]:
    """The models NDIF has deployed now (an empty list when it cannot be asked)."""
    try:
        ndif_ready()
        from nnsight.ndif import status

        found = status(raw=True)
        models = found.get("deployments", found) if isinstance(found, dict) else {}
        names = [v.get("repo_id", k) if isinstance(v, dict) else k for k, v in models.items()]
        return sorted(n for n in names if isinstance(n, str))
    except Exception:  # the list is a convenience: typing a model id works without it
        return []


@contextlib.contextmanager
def ndif_status(progress: Progress | None):
    """While a remote trace waits, NDIF's job updates (received, queued with its place in line, running)
    go to ``progress`` as well as to nnsight's own display."""
    if progress is None:
        yield
        return
    from nnsight.intervention.backends.remote import RemoteBackend

    original = RemoteBackend.note

    def note(backend, response):
        status = getattr(response.status, "name", str(response.status)).lower()
        progress(0.0 if status != "completed" else 0.99, f"NDIF: {status} {response.description or ''}".strip())
        return original(backend, response)
    RemoteBackend.note = note
    try:
        yield
    finally:
        RemoteBackend.note = original


class NnsightBackend(LocalBackend):
    """LocalBackend whose forward passes are nnsight traces (``remote``: on NDIF)."""

    def __init__(self, loaded, cache=None, remote: bool = False, **kwargs):
        super().__init__(loaded, cache, **kwargs)
        import warnings

        from nnsight import LanguageModel

        self.remote = remote
        with warnings.catch_warnings():  # nnsight 0.8 names LanguageModel deprecated; it still wraps a model object
            warnings.simplefilter("ignore")
            self.nn = getattr(loaded, "nnsight_model", None) or LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
        paths = _module_paths(loaded.model)
        a = loaded.adapter

        def env(mod):
            return None if mod is None else _envoy(self.nn, paths[id(mod)])
        self._blocks = [env(b) for b in a.blocks]
        self._attn = [env(m) for m in a.attn]
        self._attn_write = [env(m) for m in a.attn_write]
        self._mlp_write = [env(m) for m in a.mlp_write]
        self._value = [env(m) for m in a.value_proj]
        self._down = [env(m) for m in a.down_proj]
        self._norm, self._project_out, self._unembed = env(a.final_norm), env(a.project_out), env(a.unembed)
        if remote:
            for name in WEIGHT_METHODS:
                setattr(self, name, self._weights_needed(name))

    def _weights_needed(self, name: str):
        def refuse(*args, **kwargs):
            raise LensError(f"{name.replace('_', ' ')} needs the model's weights beside the forward pass, which stay "
                            "on NDIF: run it with --backend local (or the nnsight backend without --remote)")
        return refuse

    def info(self):
        info = super().info()
        from dataclasses import replace

        return replace(info, source="ndif" if self.remote else info.source)

    # ------------------------------------------------------------ one trace, what the spec asks for

    def _capture(self, ids: list[int], spec: CaptureSpec) -> Trace:
        import nnsight

        from .jobs import checkpoint

        checkpoint()
        a = self.loaded.adapter
        L = a.n_layers
        att_layers = set(spec.attention_layers(L))
        val_layers, neu_layers = set(spec.value_layers(L)), set(spec.neuron_layers(L))
        if (val_layers or neu_layers) and not a.value_proj:
            raise LensError(f"{a.model_type} keeps no value or neuron data: {a.routes_unavailable()}")
        if spec.sublayers and a.spec.is_encoder:
            raise LensError(f"{a.model_type} normalises after each sub-block (post-LN): no additive writes")
        mean = spec.attention_mean
        blocks, attn, value, down = self._blocks, self._attn, self._value, self._down
        attn_w = self._attn_write if spec.sublayers else []
        mlp_w = self._mlp_write if spec.sublayers else []
        keep_res, has_head, nnm = spec.residual, a.has_lm_head, self.nn  # plain locals: the trace may be shipped
        eager = "eager" if att_layers else "sdpa"  # only eager attention returns its weights
        with self._lock, torch.no_grad(), attention_implementation(self.loaded.model, eager):
            with nnm.trace(torch.tensor([list(ids)]), remote=self.remote):
                res, att, vals, neus = nnsight.save([]), nnsight.save({}), nnsight.save({}), nnsight.save({})
                a_out, m_out = nnsight.save([]), nnsight.save([])
                if keep_res:
                    first = blocks[0].inputs
                    h0 = first[0][0] if first[0] else first[1]["hidden_states"]
                    res.append(h0[0].float())
                for i in range(L):
                    # In the order the model computes them: nnsight reads each output as it happens.
                    if i in val_layers:
                        vals[i] = value[i].output.float()
                    if i in att_layers:
                        w = attn[i].output[1][0].float()
                        att[i] = w.mean(0) if mean else w
                    if attn_w:
                        t = attn_w[i].output
                        t = t[0] if isinstance(t, tuple) else t
                        a_out.append(t.reshape(-1, t.shape[-1]).float())
                    if i in neu_layers:
                        x = down[i].inputs[0][0]
                        neus[i] = x.reshape(-1, x.shape[-1]).float()
                    if mlp_w:
                        t = mlp_w[i].output
                        t = t[0] if isinstance(t, tuple) else t
                        m_out.append(t.reshape(-1, t.shape[-1]).float())
                    if keep_res:
                        t = blocks[i].output
                        t = t[0] if isinstance(t, tuple) else t
                        res.append(t[0].float())
                top1 = nnsight.save(nnm.output.logits[0].argmax(-1)) if has_head else None
        tok = self.loaded.tokenizer
        from .model.tokens import token_strings

        return Trace(
            model_name=self.loaded.name, fingerprint=self.loaded.fingerprint, token_ids=list(ids),
            tokens=token_strings(tok, list(ids)), n_layers=L,
            output_top1=top1.cpu() if top1 is not None else torch.empty(0, dtype=torch.long),
            residual=torch.stack(list(res)).cpu() if keep_res else None,
            attn_out=torch.stack(list(a_out)).cpu() if spec.sublayers else None,
            mlp_out=torch.stack(list(m_out)).cpu() if spec.sublayers else None,
            attentions={int(k): v.cpu() for k, v in dict(att).items()},
            values={int(k): a.values_from_output(v.cpu()) for k, v in dict(vals).items()},
            neurons={int(k): v.cpu() for k, v in dict(neus).items()},
            adapter=a,
        )

    # ------------------------------------------------------------ the logit lens, reduced where the model runs

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult:
        """As LocalBackend's, but every row is decoded and reduced inside the trace (a fitted lens, whose
        maps live here, is applied to the residual stream brought back: local execution only)."""
        options.check()
        a = self.loaded.adapter
        if not a.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: the logit lens does not apply")
        if options.lens != "logit":
            if self.remote:
                raise LensError(f"the {options.lens} lens applies maps kept on this machine: on NDIF only the "
                                "logit lens runs (or use --backend local)")
            return super().logit_lens(text, options, progress)
        key = {"prompt": text, "options": options.key(), "lens_id": None}
        return self._cached("lens", key, lambda: self._reduced_lens(self._ids(text), options, progress))

    def _reduced_lens(self, ids: list[int], options: LensOptions, progress: Progress | None) -> LogitLensResult:
        import nnsight

        from .jobs import checkpoint

        a, tok = self.loaded.adapter, self.loaded.tokenizer
        T, L = len(ids), a.n_layers
        start, stop = options.positions or (0, T)
        if not (0 <= start < stop <= T):
            raise LensError(f"position window {start}..{stop} is outside the prompt's {T} tokens")
        k = int(options.top_k)
        V = int(self.loaded.model.get_input_embeddings().weight.shape[0])
        if not 1 <= k <= min(100, V):
            raise LensError(f"top-k must be between 1 and {min(100, V)}, not {k}")
        target_id, note = resolve_target(tok, options.target)
        nxt = torch.tensor(list(ids[start + 1:stop + 1]) + [0] * (stop - start - len(ids[start + 1:stop + 1])))
        n_next = len(ids[start + 1:stop + 1])
        blocks, norm, proj, head, cap = self._blocks, self._norm, self._project_out, self._unembed, a.softcap
        nnm = self.nn  # plain locals in the trace: its code may be shipped to NDIF
        checkpoint()
        if progress is not None:
            progress(0.0, f"running {self.loaded.name}" + (" on NDIF" if self.remote else " through nnsight"))
        with self._lock, torch.no_grad(), attention_implementation(self.loaded.model, "sdpa"), \
                ndif_status(progress if self.remote else None):
            with nnm.trace(torch.tensor([list(ids)]), remote=self.remote):
                out = nnsight.save({"ids": [], "probs": [], "ent": [], "kl": [], "rank": [], "tprob": [], "loss": []})
                first = blocks[0].inputs
                hs = [(first[0][0] if first[0] else first[1]["hidden_states"])[0, start:stop]]
                for i in range(L):
                    t = blocks[i].output
                    hs.append((t[0] if isinstance(t, tuple) else t)[0, start:stop])
                top1 = nnsight.save(nnm.output.logits[0, start:stop].argmax(-1))
                lp_final = None
                for r in range(L, -1, -1):  # the last row first: every row's KL needs it
                    x = norm(hs[r]) if norm is not None else hs[r]
                    x = proj(x) if proj is not None else x
                    z = head(x).float()
                    if cap:
                        z = (z / cap).tanh() * cap
                    lp = z.log_softmax(-1)
                    if lp_final is None:
                        lp_final = lp
                        tgt = lp.argmax(-1) if target_id is None else torch.full((stop - start,), target_id)
                        out["target"] = tgt
                    tv, ti = lp.topk(k, -1)
                    zt = z.gather(-1, tgt[:, None])
                    out["ids"].append(ti)
                    out["probs"].append(tv.exp())
                    out["ent"].append(-(lp.exp() * lp).sum(-1))
                    out["kl"].append((lp_final.exp() * (lp_final - lp)).sum(-1))
                    out["rank"].append((z > zt).sum(-1) + 1)
                    out["tprob"].append(lp.gather(-1, tgt[:, None])[:, 0].exp())
                    out["loss"].append(-lp.gather(-1, nxt[:, None])[:, 0])
        if progress is not None:
            progress(1.0, "decoded every layer")

        def rows(name):
            return torch.stack(list(out[name])[::-1]).cpu().numpy()  # computed from the last row down
        top_ids = rows("ids").astype(np.int64)
        next_loss = rows("loss").astype(np.float32)
        next_loss[:, n_next:] = np.nan
        t_ids = out["target"].cpu().numpy().astype(np.int64)
        table = _decode_table(tok, np.concatenate([top_ids.ravel(), t_ids]))
        out_top1 = top1.cpu().numpy().astype(np.int64)
        return LogitLensResult(
            model=self.loaded.name, n_layers=L, tokens=self.tokenize_ids(ids), token_ids=list(ids),
            layers=["emb"] + [str(i) for i in range(1, L + 1)], positions=list(range(start, stop)),
            top_ids=top_ids, top_tokens=[[[table[int(i)] for i in cell] for cell in row] for row in top_ids],
            top_probs=rows("probs").astype(np.float32), entropy=rows("ent").astype(np.float32),
            kl_to_final=np.maximum(rows("kl"), 0).astype(np.float32), target_ids=t_ids,
            target_tokens=[table[int(i)] for i in t_ids], target_rank=rows("rank").astype(np.int64),
            target_prob=rows("tprob").astype(np.float32), next_token_loss=next_loss,
            final_prediction=[decode_token(tok, int(i)) for i in out_top1],
            exit_layer=saturation_rows(top_ids[:, :, 0], out_top1), lens="logit", target_note=note,
            options=options.key())

    def tokenize_ids(self, ids: list[int]) -> list[str]:
        from .model.tokens import token_strings

        return token_strings(self.loaded.tokenizer, list(ids))
