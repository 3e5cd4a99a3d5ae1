"""The options of a steering run (``Backend.steer``): the vector, how and where it is applied, the generation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LensError
from ..options import MAX_NEW_TOKENS, MIN_TEMPERATURE

MODES = ("add", "orthogonal", "cap", "ablate")
POSITIONS = ("all", "after-prompt", "front")
UNITS = ("raw", "norm")
VECTORS = ("contrast", "token", "saved", "probe")
MAX_PAIRS = 32  # contrast pairs in one vector
MAX_COEF = 1e4


@dataclass(frozen=True)
class SteerOptions:
    """A steering run. The vector is read at ``resid_pre.{layer}`` (the residual stream entering block ``layer``,
    1-based): ``contrast``: the mean over pairs of positive − negative at each text's last token (CAA / ActAdd);
    ``token``: the unembedding row of ``token`` (the direction the lens reads as that token); ``saved``: the vector
    saved under the name ``saved`` (lens/steering/store.py); ``probe``: the direction of a logistic-regression probe
    of the shipped set ``probe_set`` fitted at the stream entering ``layer`` (lens/probes/logistic.py: its length the
    gap between the two classes' means along it).

    ``mode`` (u = v/‖v‖, p = h·u the projection of the residual h on it, s = coef_raw·‖v‖):
    add: h + coef_raw·v; orthogonal: h + (coef − 1)·p·u (the part orthogonal to v kept, the parallel part times
    ``coef``: 1 changes nothing, 0 ablates, −1 reflects); cap: h − max(p − s, 0)·u (the projection at most s);
    ablate: h − p·u (``coef`` unused). ``unit``: raw: coef_raw = coef (it multiplies the raw vector); norm:
    coef_raw = coef·m/‖v‖ with m the mean residual norm at that layer over the prompt (its first token left out),
    so the added vector's norm is coef times m (orthogonal's coef is a ratio in either unit).
    ``positions``: all; after-prompt: the prompt's last token and every new one (the positions that choose new
    tokens); front: the prompt's first ``front_tokens`` (ActAdd)."""

    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    layer: int = 1
    coef: float = 4.0
    mode: str = "add"
    positions: str = "all"
    unit: str = "raw"
    vector: str = "contrast"
    token: str | None = None  # vector="token": the token whose unembedding direction is the vector
    saved: str | None = None  # vector="saved": the saved vector's name
    probe_set: str | None = None  # vector="probe": a shipped probe set (lens/probes/data.py SHIPPED)
    front_tokens: int = 4
    max_new_tokens: int = 20
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    # the dose-response's and the lens's token (None: a token vector's token; for a contrast, the positive text's
    # first token where the first pair differs; failing that, the steered run's first new token)
    target: str | None = None
    dose: bool = True  # also the dose-response (coefficient -> the target's log-probability, and a few texts)
    grid: bool = True  # also the full lens of both runs (every layer × the prompt and the plain continuation)

    def check(self, n_layers: int | None = None) -> None:
        if self.mode not in MODES:
            raise LensError(f"unknown steering mode {self.mode!r}; choose {', '.join(MODES)}")
        if self.positions not in POSITIONS:
            raise LensError(f"unknown positions {self.positions!r}; choose {', '.join(POSITIONS)}")
        if self.unit not in UNITS:
            raise LensError(f"unknown coefficient unit {self.unit!r}; choose raw or norm")
        if self.vector not in VECTORS:
            raise LensError(f"unknown vector {self.vector!r}; choose {', '.join(VECTORS)}")
        if self.vector == "contrast":
            if not self.positive or not self.negative:
                raise LensError("a contrast vector needs a positive and a negative text")
            if len(self.positive) != len(self.negative):
                raise LensError(f"{len(self.positive)} positive texts but {len(self.negative)} negative ones: "
                                "give them in pairs")
            if len(self.positive) > MAX_PAIRS:
                raise LensError(f"at most {MAX_PAIRS} pairs, not {len(self.positive)}")
            if any(not str(t).strip() for t in self.positive + self.negative):
                raise LensError("a positive or negative text is empty")
        elif self.vector == "token" and not self.token:
            raise LensError("a token vector needs a token (e.g. ' love')")
        elif self.vector == "saved" and not (self.saved or "").strip():
            raise LensError("name the saved vector to steer with (`python -m lens vectors list` shows them)")
        elif self.vector == "probe":
            from ..probes.data import SHIPPED

            if self.probe_set not in SHIPPED:
                raise LensError(f"a probe vector needs a shipped probe set ({', '.join(SHIPPED)}), not "
                                f"{self.probe_set!r}")
        if not isinstance(self.layer, int) or self.layer < 1 or (n_layers is not None and self.layer > n_layers):
            top = f" to {n_layers}" if n_layers is not None else ""
            raise LensError(f"the layer must be a whole number from 1{top}, not {self.layer!r}")
        try:
            c = float(self.coef)
        except (TypeError, ValueError):
            raise LensError(f"the coefficient must be a number, not {self.coef!r}") from None
        if not abs(c) <= MAX_COEF:  # also NaN
            raise LensError(f"the coefficient must be a number from −{MAX_COEF:g} to {MAX_COEF:g}, not {self.coef!r}")
        if not isinstance(self.front_tokens, int) or self.front_tokens < 1:
            raise LensError(f"front tokens must be a whole number ≥ 1, not {self.front_tokens!r}")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise LensError(f"new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, not {self.max_new_tokens!r}")
        t = float(self.temperature)
        if not (t == 0.0 or MIN_TEMPERATURE <= t <= 5.0):
            raise LensError(f"the temperature must be 0 (greedy) or from {MIN_TEMPERATURE} to 5, not {self.temperature!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise LensError(f"the seed must be a whole number ≥ 0, not {self.seed!r}")

    def key(self) -> dict:
        d = asdict(self)
        d["positive"], d["negative"] = list(self.positive), list(self.negative)
        d["coef"], d["temperature"] = float(self.coef), float(self.temperature)
        if self.temperature == 0:
            d["seed"] = None  # greedy runs do not depend on the seed
        return d
