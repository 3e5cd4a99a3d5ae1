"""The options of a probe run (``Backend.probe``)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LensError

MAX_FOLDS = 20


@dataclass(frozen=True)
class ProbeOptions:
    """``folds``: k of k-fold cross-validation (stratified, in the set's order); ``l2``: λ of the L2 penalty on the
    standardised features (lens/probes/logistic.py)."""

    folds: int = 5
    l2: float = 1.0

    def check(self, n: int | None = None, fewest: int | None = None) -> None:
        if not isinstance(self.folds, int) or not 2 <= self.folds <= MAX_FOLDS:
            raise LensError(f"folds must be a whole number from 2 to {MAX_FOLDS}, not {self.folds!r}")
        try:
            lam = float(self.l2)
        except (TypeError, ValueError):
            raise LensError(f"the L2 strength must be a number, not {self.l2!r}") from None
        if not 1e-6 <= lam <= 1e6:
            raise LensError(f"the L2 strength must be from 1e-6 to 1e6, not {self.l2!r}")
        if fewest is not None and fewest < self.folds:
            raise LensError(f"the smaller class has {fewest} prompts: fewer than the {self.folds} folds")

    def key(self) -> dict:
        return {"folds": int(self.folds), "l2": float(self.l2)}
