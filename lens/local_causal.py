"""The causal experiments of ``LocalBackend`` (lens/local_backend.py): activation patching, one
patched cell, ablations. A mixin: it uses the backend's loaded model, lock, token ids and cache."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .analysis.logit_lens import logit_lens
from .errors import LensError
from .jobs import checkpoint
from .model.tokens import token_strings, visible
from .model.trace import CaptureSpec, capture
from .options import Ablation, LensOptions, PatchOptions, Progress
from .results import LogitLensResult, ModelComparison, PatchResult


class CausalMethods:
    def _one_token(self, text: str, what: str) -> int:
        ids = self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            shown = [visible(t) for t in token_strings(self.loaded.tokenizer, ids)]
            raise LensError(f"the {what} {text!r} is {len(ids)} tokens here ({shown}), not one: "
                            "give a single token, e.g. with its leading space")
        return int(ids[0])

    def patch(self, clean: str, corrupt: str, options: PatchOptions,
              progress: Progress | None = None) -> PatchResult:
        """Activation patching of ``clean``'s activations at ``options.site`` into ``corrupt``'s run."""
        from .analysis.patching import check_pair, check_site, lens_metric, normalised, patch_grid, record_pair

        options.check()
        a = self.loaded.adapter
        check_site(options.site, a)
        target = self._one_token(options.target, "target")
        foil = None if options.foil is None else self._one_token(options.foil, "foil")
        if foil == target:
            raise LensError("the target and the foil are the same token: the logit difference is always 0")
        clean_ids, corrupt_ids = self._ids(clean), self._ids(corrupt)
        tok = self.loaded.tokenizer
        check_pair(clean_ids, corrupt_ids, [visible(t) for t in token_strings(tok, clean_ids)],
                   [visible(t) for t in token_strings(tok, corrupt_ids)])

        def compute():
            checkpoint()
            with self._lock:
                c, k = record_pair(self.loaded.model, a, clean_ids, corrupt_ids, options.site)
                raw, m_clean, m_corrupt = patch_grid(self.loaded.model, a, c, k, target, foil, options.site, progress)
                read_clean, read_corrupt = lens_metric(a, c, target, foil), lens_metric(a, k, target, foil)
            L, T = a.n_layers, len(corrupt_ids)
            rows = (["emb"] if options.site == "resid" else []) + [str(i) for i in range(1, L + 1)]  # as the lens
            cols = [f"head {h}" for h in range(a.n_heads)] if options.site == "head" else [str(p) for p in range(T)]
            return PatchResult(
                model=self.loaded.name, site=options.site, tokens=token_strings(tok, clean_ids),
                corrupt_tokens=token_strings(tok, corrupt_ids), layers=rows, columns=cols,
                target=options.target, foil=options.foil,
                metric_name="logit difference" if foil is not None else "log-probability",
                metric_clean=m_clean, metric_corrupt=m_corrupt, patch=normalised(raw, m_clean, m_corrupt),
                raw=raw.astype(np.float64), lens_clean=read_clean.astype(np.float64),
                lens_corrupt=read_corrupt.astype(np.float64))
        return self._cached("patch", {"prompt": [clean, corrupt], "options": options.key()}, compute)

    def _hooked_lens(self, ids: list[int], make_hooks: Callable[[], list], lens: LensOptions) -> LogitLensResult:
        """The logit lens of ``ids`` run with the hooks ``make_hooks()`` fits (removed afterwards)."""
        checkpoint()
        with self._lock:
            handles = make_hooks()
            try:
                tr = capture(self.loaded.model, self.loaded.adapter, ids, CaptureSpec(residual=True),
                             model_name=self.loaded.name, fingerprint=self.loaded.fingerprint,
                             tokens=token_strings(self.loaded.tokenizer, ids))
            finally:
                for h in handles:
                    h.remove()
        return logit_lens(tr, self.loaded.tokenizer, lens)

    def patched_lens(self, clean: str, corrupt: str, row: int, position: int,
                     lens: LensOptions = LensOptions()) -> LogitLensResult:
        """The corrupted prompt's logit lens with one residual-stream vector (``row``: 0 the embeddings,
        r the output of block r; ``position``) taken from the clean prompt's run."""
        from .analysis.checks import check_position
        from .analysis.patching import check_pair, check_site
        from .model.intervene import cell_patch_hook, record

        lens.check()
        a = self.loaded.adapter
        check_site("resid", a)
        clean_ids, corrupt_ids = self._ids(clean), self._ids(corrupt)
        tok = self.loaded.tokenizer
        check_pair(clean_ids, corrupt_ids, [visible(t) for t in token_strings(tok, clean_ids)],
                   [visible(t) for t in token_strings(tok, corrupt_ids)])
        if not isinstance(row, int) or not 0 <= row <= a.n_layers:
            raise LensError(f"row {row} is out of range: rows are 0 (the embeddings) to {a.n_layers}")
        position = check_position(position, len(corrupt_ids))

        def compute():
            with self._lock:
                rec = record(self.loaded.model, a, clean_ids)
            return self._hooked_lens(corrupt_ids, lambda: [cell_patch_hook(a, rec, row, position)], lens)
        key = {"prompt": [clean, corrupt], "options": {"row": row, "position": position, "lens": lens.key()}}
        return self._cached("patched-lens", key, compute)

    def ablated_lens(self, text: str, ablation: Ablation, lens: LensOptions = LensOptions()) -> LogitLensResult:
        """The logit lens of ``text`` on the model with ``ablation`` applied (no ablation: the plain lens)."""
        from .model.intervene import ablation_hooks, record

        lens.check()
        a = self.loaded.adapter
        ablation.check(a.n_layers, a.n_heads)
        if not a.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: the logit lens does not apply")
        if ablation.heads and not a.out_proj:
            raise LensError(f"heads of {a.model_type} cannot be ablated separately: {a.routes_unavailable()}")
        if ablation.mlp and a.post_ln:
            raise LensError(f"{a.model_type} normalises after each sub-block: its MLP output is not a separate write")
        ids = self._ids(text)

        def compute():
            means = None
            if ablation.mode == "mean" and (ablation.heads or ablation.mlp):
                with self._lock:
                    means = record(self.loaded.model, a, ids, sublayers=True)
            return self._hooked_lens(ids, lambda: ablation_hooks(a, ablation, means), lens)
        if ablation.empty:
            return self.logit_lens(text, lens)
        return self._cached("ablated-lens", {"prompt": text, "options": {"ablation": ablation.key(),
                                                                           "lens": lens.key()}}, compute)

    def compare_with(self, other, text: str) -> ModelComparison:
        """This model's logit lens of ``text`` beside ``other``'s (another LocalBackend), cell by cell."""
        from .analysis.compare import compare_lenses

        for b in (self, other):
            if not b.loaded.adapter.has_lm_head:
                raise LensError(f"{b.loaded.name} has no language-model head: the logit lens does not apply")
        key = {"prompt": text, "options": {"other": other.loaded.fingerprint}}
        return self._cached("compare", key, lambda: compare_lenses(
            self._residual_trace(text), other._residual_trace(text), self.loaded.tokenizer))
