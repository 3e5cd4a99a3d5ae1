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
        if fewest is not None and fewest < 2:
            raise LensError(f"a label has {fewest} prompt: give each label at least two")

    def fitted(self, fewest: int) -> "ProbeOptions":
        """These options for a set whose smaller label has ``fewest`` prompts: at most that many folds (each fold
        holds a prompt of each label)."""
        return ProbeOptions(folds=min(int(self.folds), int(fewest)), l2=float(self.l2))

    def key(self) -> dict:
        return {"folds": int(self.folds), "l2": float(self.l2)}
