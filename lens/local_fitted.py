"""The fitted lenses of ``LocalBackend`` (lens/local_backend.py): fitting, storing and using them, the lens
comparison and the language of each layer. A mixin: it uses the backend's model, lock, cache and jobs.

A model's lenses are stored by kind and corpus (``cache/lenses/<fingerprint>/<kind>-<corpus>.safetensors``);
the newest of a kind is the one in use. Fitting on a corpus already fitted returns that fit at once
(and makes it the one in use). Results computed with a fitted lens carry its id in their cache key.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .analysis.language import language_mass, vocab_scripts
from .analysis.lens_comparison import compare_lenses
from .errors import LensError
from .fitted.affine import FITTED_KINDS, AffineLens, lens_path, load_lens, save_lens, stored_lenses, use_lens
from .model.registry import default_cache_root
from .options import LensOptions, Progress, check_lens
from .results import LanguageMass, LensComparison, LensFit

_fit_lock = threading.Lock()  # one fit at a time in a process: each takes the whole CPU for minutes


def _as_fit(model: str, lens: AffineLens, reused: bool = False) -> LensFit:
    m = lens.meta
    shown = {k: v for k, v in m.items() if k not in ("id", "source", "corpus", "tokens", "seconds", "kind")}
    return LensFit(model=model, kind=lens.kind, lens_id=lens.lens_id, source=m.get("source", ""),
                   corpus=m.get("corpus", ""), tokens=int(m.get("tokens", 0)), seconds=float(m.get("seconds", 0.0)),
                   reused=reused, details=shown)


class FittedLensMethods:
    def _lens_file(self, kind: str, source: str) -> Path:
        return lens_path(default_cache_root(), self.loaded.fingerprint, kind, source)

    def _read_lens(self, path: Path) -> AffineLens | None:
        """The lens at ``path`` (None if absent or unusable), kept in memory while the file is unchanged."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        memo = self._lens_memo.get(path)
        if memo is not None and memo[0] == stamp:
            return memo[1]
        a = self.loaded.adapter
        lens = load_lens(path, a.n_layers, a.d_model)
        self._lens_memo[path] = (stamp, lens)
        return lens

    def fitted_lens(self, kind: str) -> AffineLens | None:
        """The lens of ``kind`` in use for this model (the newest stored fit that can be read), or None."""
        for path in stored_lenses(default_cache_root(), self.loaded.fingerprint, kind):
            lens = self._read_lens(path)
            if lens is not None and lens.kind == kind:
                return lens
        return None

    def lens_fits(self) -> list[LensFit]:
        """The fitted lenses this model has now."""
        return [_as_fit(self.loaded.name, lens) for kind in FITTED_KINDS if (lens := self.fitted_lens(kind))]

    def fit_lens(self, kind: str = "linear", corpus_file: str | None = None, checkpoint: str | None = None,
                 steps: int | None = None, progress: Progress | None = None) -> LensFit:
        """Fit (``linear``), train (``tuned``) or import (``tuned`` from a tuned-lens ``checkpoint`` folder)
        a lens for this model and store it; one already fitted the same way is returned at once."""
        from .fitted.corpus import load_corpus
        from .fitted.linear import fit_linear
        from .fitted.tuned import DEFAULT_STEPS, read_tuned_checkpoint, train_tuned
        from .hosting import hosting

        if kind not in FITTED_KINDS:
            raise LensError(f"unknown lens kind {kind!r} to fit; choose {' or '.join(FITTED_KINDS)}")
        a = self.loaded.adapter
        if not a.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: a fitted lens does not apply")
        if checkpoint is not None and (kind != "tuned" or corpus_file is not None or steps is not None):
            raise LensError("a checkpoint is a tuned lens: give --kind tuned and neither a corpus nor steps")
        if checkpoint is not None:
            lens = read_tuned_checkpoint(checkpoint, a.n_layers, a.d_model)
            save_lens(self._lens_file("tuned", f"checkpoint-{lens.lens_id}"), lens)
            return _as_fit(self.loaded.name, lens)
        steps = DEFAULT_STEPS if steps is None else steps
        corpus = load_corpus(self.loaded.tokenizer, corpus_file)
        linear_file = self._lens_file("linear", corpus.digest)
        target = linear_file if kind == "linear" else self._lens_file("tuned", f"{corpus.digest}-{steps}")
        have = self._read_lens(target)
        if have is not None:
            use_lens(target)
            return _as_fit(self.loaded.name, have, reused=True)
        if hosting().demo:
            raise LensError(f"this demo server does not fit lenses; its host can run "
                            f"`python -m lens fit-lens --kind {kind}` before the talk")

        def compute() -> AffineLens:
            with _fit_lock:
                done = self._read_lens(target)  # fitted meanwhile by another caller
                if done is not None:
                    return done
                linear = self._read_lens(linear_file)
                if linear is None:  # a tuned lens starts from the linear shortcut of the same corpus
                    part = (lambda f, m: progress(f / 2, m)) if progress and kind == "tuned" else progress
                    linear = fit_linear(self.loaded.model, a, corpus, progress=part, lock=self._lock)
                    save_lens(linear_file, linear)
                if kind == "linear":
                    return linear
                part = (lambda f, m: progress(0.5 + f / 2, m)) if progress else None
                tuned = train_tuned(self.loaded.model, a, corpus, init=linear, steps=steps, progress=part,
                                    lock=self._lock)
                save_lens(target, tuned)
                return tuned
        lens = self.jobs.run(compute) if self.jobs is not None else compute()
        return _as_fit(self.loaded.name, lens)

    def _lens_for(self, kind: str, progress: Progress | None = None) -> AffineLens | None:
        """The maps a lens of ``kind`` reads rows through (None for the logit lens); a linear lens is
        fitted on the shipped corpus the first time it is asked for, a tuned one must exist."""
        check_lens(kind)
        if kind == "logit":
            return None
        lens = self.fitted_lens(kind)
        if lens is None and kind == "linear":
            self.fit_lens("linear", progress=progress)
            lens = self.fitted_lens("linear")
        if lens is None:
            raise LensError(f"{self.loaded.name} has no {kind} lens yet: train one with "
                            f"`python -m lens fit-lens --kind tuned` (minutes on a CPU), or load a tuned-lens "
                            "checkpoint folder with `python -m lens fit-lens --kind tuned --checkpoint FOLDER`")
        return lens

    def lens_comparison(self, text: str, positions: tuple[int, int] | None = None) -> LensComparison:
        """Every lens this model has (the logit lens and the fitted ones) on ``text``, row by row."""
        kinds = ["logit"] + [k for k in FITTED_KINDS if self.fitted_lens(k) is not None]
        results = [self.logit_lens(text, LensOptions(top_k=1, positions=positions, lens=k)) for k in kinds]
        ids = [(self.fitted_lens(k).lens_id if k != "logit" else "") for k in kinds]
        return compare_lenses(results, ids)

    def latent_language(self, text: str, position: int | None = None, words: tuple[str, ...] = (),
                        lens: str = "logit") -> LanguageMass:
        """Per row, the reading's probability on each script and on ``words``, at ``position``."""
        fitted = self._lens_for(lens)
        key = {"prompt": text, "options": {"position": position, "words": list(words), "lens": lens,
                                           "lens_id": fitted.lens_id if fitted else None}}

        def compute():
            scripts = self._memo("vocab-scripts", "", lambda: vocab_scripts(
                self.loaded.tokenizer, int(self.loaded.adapter.unembed.weight.shape[0])))
            return language_mass(self._residual_trace(text), self.loaded.tokenizer, scripts, position,
                                 list(words), fitted, lens)
        if not self.loaded.adapter.has_lm_head:
            raise LensError(f"{self.loaded.name} has no language-model head: the lens does not apply")
        return self._cached("language", key, compute)
