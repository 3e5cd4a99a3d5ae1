"""A model's fitted lenses on disk: which exist, the one in use per kind, fitting and importing new ones.

Lenses are stored by kind and corpus (``cache/lenses/<fingerprint>/<kind>-<corpus>.safetensors``);
the newest of a kind is the one in use. Jacobian lenses (lens/fitted/jacobian.py) are imported from a
checkpoint only, and stored the same way (``jacobian-checkpoint-<id>.safetensors``). Fitting on a corpus already fitted returns that fit at once
(and makes it the one in use). Results computed with a fitted lens carry its id in their cache key.
"""
from __future__ import annotations

import threading
from pathlib import Path

from ..errors import LensError
from ..options import Progress
from ..results import LensFit
from .affine import FITTED_KINDS, AffineLens, lens_path, load_lens, save_lens, stored_lenses, use_lens
from .jacobian import KIND as JACOBIAN
from .jacobian import load_stored as load_jacobian

STORED_KINDS = FITTED_KINDS + (JACOBIAN,)  # every kind a model's store may hold, in the order they are listed

_fit_lock = threading.Lock()  # one fit at a time in a process: each takes the whole CPU for minutes


def as_fit(model: str, lens: AffineLens, reused: bool = False) -> LensFit:
    m = lens.meta
    shown = {k: v for k, v in m.items() if k not in ("id", "source", "corpus", "tokens", "seconds", "kind")}
    return LensFit(model=model, kind=lens.kind, lens_id=lens.lens_id, source=m.get("source", ""),
                   corpus=m.get("corpus", ""), tokens=int(m.get("tokens", 0)), seconds=float(m.get("seconds", 0.0)),
                   reused=reused, details=shown)


class LensStore:
    """The fitted lenses of one model (``engine`` runs it; ``root`` is the cache folder)."""

    def __init__(self, root: Path, name: str, fingerprint: str, tokenizer, engine):
        self.root, self.name, self.fingerprint, self.tokenizer, self.engine = root, name, fingerprint, tokenizer, engine
        self._memo: dict[Path, tuple[int, AffineLens | None]] = {}  # by file: (mtime, lens or None)

    def file(self, kind: str, source: str) -> Path:
        return lens_path(self.root, self.fingerprint, kind, source)

    def read(self, path: Path) -> AffineLens | None:
        """The lens at ``path`` (None if absent or unusable), kept in memory while the file is unchanged."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        memo = self._memo.get(path)
        if memo is not None and memo[0] == stamp:
            return memo[1]
        a = self.engine.adapter
        load = load_jacobian if path.name.startswith(f"{JACOBIAN}-") else load_lens
        lens = load(path, a.n_layers, a.d_model)
        self._memo[path] = (stamp, lens)
        return lens

    def current(self, kind: str) -> AffineLens | None:
        """The lens of ``kind`` in use (the newest stored fit that can be read), or None."""
        for path in stored_lenses(self.root, self.fingerprint, kind):
            lens = self.read(path)
            if lens is not None and lens.kind == kind:
                return lens
        return None

    def fits(self) -> list[LensFit]:
        return [as_fit(self.name, lens) for kind in STORED_KINDS if (lens := self.current(kind))]

    def fit(self, kind: str, corpus_file: str | None, checkpoint: str | None, steps: int | None,
            progress: Progress | None, run, refuse_new: str | None = None) -> LensFit:
        """Fit (``linear``), train (``tuned``) or import (``tuned`` from a tuned-lens ``checkpoint`` folder,
        ``jacobian`` from a Jacobian-lens checkpoint file or folder) a lens and store it; one already fitted the same way is returned at once. ``run`` runs the computation (the
        job queue); ``refuse_new``: the message to raise instead of fitting anew (a demo server)."""
        from .corpus import load_corpus
        from .jacobian import read_jacobian_checkpoint
        from .linear import fit_linear
        from .tuned import DEFAULT_STEPS, read_tuned_checkpoint, train_tuned

        a = self.engine.adapter
        if kind == JACOBIAN and checkpoint is None:
            raise LensError("a Jacobian lens is not fitted here: give its checkpoint (a .pt or .safetensors file)")
        if checkpoint is not None:
            read = read_jacobian_checkpoint if kind == JACOBIAN else read_tuned_checkpoint
            lens = read(checkpoint, a.n_layers, a.d_model)
            save_lens(self.file(lens.kind, f"checkpoint-{lens.lens_id}"), lens)
            return as_fit(self.name, lens)
        steps = DEFAULT_STEPS if steps is None else steps
        corpus = load_corpus(self.tokenizer, corpus_file)
        linear_file = self.file("linear", corpus.digest)
        target = linear_file if kind == "linear" else self.file("tuned", f"{corpus.digest}-{steps}")
        have = self.read(target)
        if have is not None:
            use_lens(target)
            return as_fit(self.name, have, reused=True)
        if refuse_new:
            raise LensError(refuse_new)

        def compute() -> AffineLens:
            with _fit_lock:
                done = self.read(target)  # fitted meanwhile by another caller
                if done is not None:
                    return done
                linear = self.read(linear_file)
                if linear is None:  # a tuned lens starts from the linear shortcut of the same corpus
                    part = (lambda f, m: progress(f / 2, m)) if progress and kind == "tuned" else progress
                    linear = fit_linear(self.engine, corpus, progress=part)
                    save_lens(linear_file, linear)
                if kind == "linear":
                    return linear
                part = (lambda f, m: progress(0.5 + f / 2, m)) if progress else None
                tuned = train_tuned(self.engine, corpus, init=linear, steps=steps, progress=part)
                save_lens(target, tuned)
                return tuned
        return as_fit(self.name, run(compute))
