"""What a suite request may ask for (as lens/options.py for single prompts). Imports nothing heavy."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LensError
from ..options import PATCH_SITES, check_lens


@dataclass(frozen=True)
class SuiteOptions:
    """The lens of every prompt of a suite at one position each (the last unless an item names one)."""

    lens: str = "logit"  # logit | linear | tuned | jacobian (a fitted or imported lens must exist: Backend.fit_lens)

    def check(self) -> None:
        check_lens(self.lens)

    def key(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairSuiteOptions:
    """Activation patching of every clean/corrupt pair of a suite at ``site``, averaged over the pairs."""

    site: str = "resid"  # resid | attn | mlp | head

    def check(self) -> None:
        if self.site not in PATCH_SITES:
            raise LensError(f"unknown patching site {self.site!r}; choose {', '.join(PATCH_SITES)}")

    def key(self) -> dict:
        return asdict(self)
