"""What a request to an analysis may ask for: options and their limits. Imports nothing heavy.

Each options class has ``key()``, the part of the cache key that names it, and,
where a value can be wrong, ``check()``, which raises LensError before any model work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .errors import LensError

Progress = Callable[[float, str], None]  # (fraction done, what is being done)

# Projections
METHODS = ("pca", "umap")
MODES = ("joint", "aligned")
MAX_UMAP_POINTS = 10_000  # layers × tokens; beyond this UMAP takes minutes on a laptop

# Routes keep every layer's attention: L·H·T² floats (SmolLM2 at 512 tokens: 280 MB).
ROUTE_MAX_TOKENS = 512
DEFAULT_THRESHOLD = 0.04
MAX_TOP_K = 100
MAX_ALTERNATIVES = 20


def check_threshold(threshold: float) -> float:
    """A route graph's edge threshold: a share of a node's importance, above 0 and below 0.5."""
    t = float(threshold)
    if not 0.0 < t < 0.5:
        raise LensError(f"the threshold must be between 0 and 0.5, not {threshold}")
    return t


# How a row is read: as it is, or through a map fitted (linear, tuned) or imported (tuned, jacobian) in lens/fitted/.
LENSES = ("logit", "linear", "tuned", "jacobian")
LENS_LABELS = {"logit": "logit lens", "linear": "linear shortcut", "tuned": "tuned lens", "jacobian": "Jacobian lens"}


def check_lens(lens: str) -> str:
    if lens not in LENSES:
        raise LensError(f"unknown lens {lens!r}; choose {', '.join(LENSES)}")
    return lens


@dataclass(frozen=True)
class LensOptions:
    top_k: int = 5
    target: str | None = None  # text whose first token is tracked; None: the final top-1
    positions: tuple[int, int] | None = None  # [start, stop) window; None: all
    lens: str = "logit"  # logit | linear | tuned | jacobian
    # Also follow the final layer's top-n tokens at the last position as targets (a page switches between
    # them without computing the lens again: lens.analysis.retarget). 0: none.
    alternatives: int = 0

    def check(self) -> None:
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= MAX_TOP_K:
            raise LensError(f"top-k must be a whole number from 1 to {MAX_TOP_K}, not {self.top_k!r}")
        if not isinstance(self.alternatives, int) or not 0 <= self.alternatives <= MAX_ALTERNATIVES:
            raise LensError(f"alternative targets must be a whole number from 0 to {MAX_ALTERNATIVES}, "
                            f"not {self.alternatives!r}")
        check_lens(self.lens)

    def key(self) -> dict:
        key = {"top_k": self.top_k, "target": self.target,
               "positions": list(self.positions) if self.positions else None, "lens": self.lens}
        if self.alternatives:  # (left out at 0: the results and cache keys of before stay as they were)
            key["alternatives"] = self.alternatives
        return key


MIN_TEMPERATURE = 0.01
MAX_NEW_TOKENS = 64  # "watch it generate": one lens over prompt + new tokens stays interactive


@dataclass(frozen=True)
class GenerateOptions:
    max_new_tokens: int = 20
    temperature: float = 0.0  # 0: greedy (the top-1 each time); above 0: sampled with ``seed``
    seed: int = 0

    def check(self) -> None:
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise LensError(f"new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, not {self.max_new_tokens!r}")
        t = float(self.temperature)
        if not (t == 0.0 or MIN_TEMPERATURE <= t <= 5.0):  # below the minimum, logits / t overflow to inf
            raise LensError(f"the temperature must be 0 (greedy) or from {MIN_TEMPERATURE} to 5, not {self.temperature!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise LensError(f"the seed must be a whole number ≥ 0, not {self.seed!r}")

    def key(self) -> dict:
        # A greedy run does not depend on the seed: one cache entry for all of them.
        return {"max_new_tokens": self.max_new_tokens, "temperature": float(self.temperature),
                "seed": self.seed if self.temperature > 0 else None}


@dataclass(frozen=True)
class ProjectionOptions:
    method: str = "pca"  # pca | umap
    mode: str = "joint"  # joint | aligned
    dims: int = 2  # 2 or 3
    rms_scale: bool = True  # divide each layer by its RMS before fitting
    skip_first: bool = True  # leave out each text's first token (BOS / attention sink)
    skip_special: bool = True  # leave out the tokenizer's special tokens ([CLS], [SEP], ...)
    n_neighbors: int = 15  # UMAP only
    min_dist: float = 0.1  # UMAP only
    seed: int | None = None  # UMAP only; None: parallel and faster, but not bit-for-bit repeatable

    def key(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        if self.method not in METHODS:
            raise LensError(f"unknown projection method {self.method!r}; choose {' or '.join(METHODS)}")
        if self.mode not in MODES:
            raise LensError(f"unknown projection mode {self.mode!r}; choose {' or '.join(MODES)}")
        if self.dims not in (2, 3):
            raise LensError(f"a projection has 2 or 3 dimensions, not {self.dims}")
        if self.method == "umap" and self.mode == "aligned":
            raise LensError("UMAP is fitted jointly over all layers only; use PCA for per-layer aligned projections")
        if not 2 <= self.n_neighbors <= 200:
            raise LensError(f"UMAP neighbours must be between 2 and 200, not {self.n_neighbors}")


@dataclass(frozen=True)
class GeometryOptions:
    skip_first: bool = True
    skip_special: bool = True
    word: str | None = None  # for self-similarity and word MEV

    def key(self) -> dict:
        return asdict(self)


PATCH_SITES = ("resid", "attn", "mlp", "head")


def check_patch_site(site: str, info) -> str:
    """``site`` checked against the model ``info`` (a ModelInfo) describes."""
    if site not in PATCH_SITES:
        raise LensError(f"unknown patching site {site!r}; choose {', '.join(PATCH_SITES)}")
    if not info.has_lm_head or not info.is_causal:
        raise LensError(f"{info.model_type} is not a causal language model: patching its answer does not apply")
    if site in ("attn", "mlp") and info.post_ln:
        raise LensError(f"{info.model_type} normalises after each sub-block: its attention and MLP outputs "
                        "are not separate writes to patch; patch the residual stream")
    if site == "head" and not info.has_head_sites:
        raise LensError(f"heads of {info.model_type} cannot be patched separately: {info.routes_note}")
    return site


@dataclass(frozen=True)
class PatchOptions:
    target: str  # the answer of the clean prompt, one token (e.g. " Paris")
    foil: str | None = None  # the corrupted prompt's answer (e.g. " Rome"); None: the target's log-probability
    site: str = "resid"

    def check(self) -> None:
        if not isinstance(self.target, str) or self.target == "":
            raise LensError("give a target token, e.g. ' Paris' (with its leading space)")
        if self.foil == "":
            raise LensError("the foil is empty: give a token, e.g. ' Rome', or leave it out")
        if self.site not in PATCH_SITES:
            raise LensError(f"unknown patching site {self.site!r}; choose {', '.join(PATCH_SITES)}")

    def key(self) -> dict:
        return asdict(self)


NOISE_SITES = ("resid", "attn", "mlp")


@dataclass(frozen=True)
class NoiseOptions:
    """Causal tracing with noise (ROME): Gaussian noise on the ``subject``'s token embeddings (positions,
    0-based, negative from the end) instead of a corrupted prompt, one activation restored per cell."""

    target: str | None = None  # the prompt's answer, one token (e.g. " Paris"); None: the model's own answer
    subject: tuple[int, ...] = ()  # the positions the noise goes on (e.g. the subject's tokens)
    foil: str | None = None  # None: the target's log-probability
    site: str = "resid"  # resid | attn | mlp
    samples: int = 5  # noise samples averaged per cell (ROME used 10: more is steadier and slower)
    seed: int = 0
    scale: float = 3.0  # the noise's standard deviation, in standard deviations of the prompt's embeddings

    def check(self) -> None:
        PatchOptions(" " if self.target is None else self.target, self.foil).check()
        if self.site not in NOISE_SITES:
            raise LensError(f"noise tracing restores {', '.join(NOISE_SITES)}, not {self.site!r}")
        if not self.subject or not all(isinstance(p, int) and not isinstance(p, bool) for p in self.subject):
            raise LensError("say which tokens get the noise: one or more positions (e.g. the subject's)")
        if len(set(self.subject)) != len(self.subject):
            raise LensError(f"a position is named twice in {list(self.subject)}")
        if not isinstance(self.samples, int) or not 1 <= self.samples <= 100:
            raise LensError(f"samples is a whole number from 1 to 100, not {self.samples!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise LensError(f"the seed is a whole number from 0, not {self.seed!r}")
        if not isinstance(self.scale, (int, float)) or not 0 < self.scale <= 20:
            raise LensError(f"the noise scale is a number above 0 and at most 20, not {self.scale!r}")

    def key(self) -> dict:
        return asdict(self)


ABLATION_MODES = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """What to take out of the model: heads ((layer, head), layers 1-based), MLP blocks, whole layers
    (skipped: the block passes its input on), or two layers run in each other's place."""

    heads: tuple[tuple[int, int], ...] = ()
    mlp: tuple[int, ...] = ()
    skip: tuple[int, ...] = ()
    swap: tuple[int, int] | None = None
    mode: str = "zero"  # zero | mean: the ablated output replaced by zeros, or by its mean over the prompt's positions

    @property
    def empty(self) -> bool:
        return not (self.heads or self.mlp or self.skip or self.swap)

    def check(self, n_layers: int, n_heads: int) -> None:
        if self.mode not in ABLATION_MODES:
            raise LensError(f"unknown ablation mode {self.mode!r}; choose zero or mean")
        layers = [l for l, _ in self.heads] + list(self.mlp) + list(self.skip) + list(self.swap or ())
        for l in layers:
            if not isinstance(l, int) or not 1 <= l <= n_layers:
                raise LensError(f"layer {l} is out of range: this model has layers 1..{n_layers}")
        for l, h in self.heads:
            if not isinstance(h, int) or not 0 <= h < n_heads:
                raise LensError(f"head {l}.{h} is out of range: layer {l} has heads 0..{n_heads - 1}")
        if self.swap is not None and self.swap[0] == self.swap[1]:
            raise LensError(f"swapping layer {self.swap[0]} with itself changes nothing: give two layers")

    def key(self) -> dict:
        return {"heads": [list(h) for h in sorted(self.heads)], "mlp": sorted(self.mlp), "skip": sorted(self.skip),
                "swap": list(self.swap) if self.swap else None, "mode": self.mode}


def _numbers(text: str | None, flag: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise LensError(f"{flag} are layer numbers separated by commas (e.g. 3,12), not {text.strip()!r}") from None


def ablation_from_text(heads_text: str | None, mlp: str | None, skip: str | None, swap_text: str | None,
                       mode: str = "zero"):
    """An Ablation from the texts a person types: '20.3,21.0', '1,2', '15', '10:11'."""
    heads = []
    for item in (heads_text or "").split(","):
        if not item.strip():
            continue
        try:
            l, h = item.split(".")
            heads.append((int(l), int(h)))
        except ValueError:
            raise LensError(f"heads are LAYER.HEAD pairs separated by commas (e.g. 20.3,21.0), not {item.strip()!r}") from None
    swap = None
    if swap_text and swap_text.strip():
        try:
            a, b = swap_text.split(":")
            swap = (int(a), int(b))
        except ValueError:
            raise LensError(f"a swap is two layers as L:M (e.g. 10:11), not {swap_text.strip()!r}") from None
    return Ablation(heads=tuple(heads), mlp=_numbers(mlp, "MLP blocks"), skip=_numbers(skip, "skipped layers"),
                    swap=swap, mode=mode)


# ---------------------------------------------------------------- one options class per Backend method
# Each keeps the cache key its method has always had (a cache written before stays valid).

def check_layer(layer: int, n_layers: int) -> int:
    """A 1-based block number (as in the lens rows L1..Ln)."""
    if isinstance(layer, bool) or not isinstance(layer, (int,)) and not str(layer).lstrip("-").isdigit():
        raise LensError(f"a layer is a whole number, not {layer!r}")
    layer = int(layer)
    if not 1 <= layer <= n_layers:
        raise LensError(f"layer {layer} is out of range: this model has layers 1..{n_layers}")
    return layer


def check_position_value(position) -> int | None:
    """A position as given (a number or its text): the whole number it names, or None; else one line."""
    if position is None:
        return None
    if isinstance(position, bool) or not str(position).lstrip("-").isdigit():
        raise LensError(f"a position is a whole number (negative counts from the end), not {position!r}")
    return int(position)


@dataclass(frozen=True)
class RolloutOptions:
    position: int | None = None  # None: the last token; negative counts from the end

    def check(self) -> None:
        check_position_value(self.position)

    def key(self) -> dict:
        return {"position": self.position}


@dataclass(frozen=True)
class FlowOptions:
    position: int | None = None
    layers: tuple[int, ...] | None = None  # the layers the flow runs through (None: all)

    def check(self) -> None:
        check_position_value(self.position)

    def key(self) -> dict:
        return {"position": self.position, "layers": sorted(self.layers) if self.layers else None}


@dataclass(frozen=True)
class HeadOptions:
    layer: int

    def check(self, n_layers: int) -> int:
        return check_layer(self.layer, n_layers)


@dataclass(frozen=True)
class ContributionOptions:
    layer: int
    position: int | None = None

    def check(self) -> None:
        check_position_value(self.position)

    def key(self) -> dict:
        return {"layer": self.layer, "position": self.position}


@dataclass(frozen=True)
class RouteOptions:
    position: int | None = None
    threshold: float = DEFAULT_THRESHOLD

    def check(self) -> None:
        check_position_value(self.position)
        check_threshold(self.threshold)

    def key(self) -> dict:
        return {"position": self.position, "threshold": round(float(self.threshold), 6)}


NODE_BLOCKS = ("attn", "mlp")


@dataclass(frozen=True)
class NodeOptions:
    layer: int
    position: int | None = None
    block: str = "attn"  # attn | mlp
    top_k: int = 8

    def check(self, n_layers: int) -> int:
        check_position_value(self.position)
        if self.block not in NODE_BLOCKS:
            raise LensError(f"block must be one of {', '.join(NODE_BLOCKS)}, not {self.block!r}")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= MAX_TOP_K:
            raise LensError(f"top-k must be a whole number from 1 to {MAX_TOP_K}, not {self.top_k!r}")
        return check_layer(self.layer, n_layers)

    def key(self, layer: int) -> dict:
        return {"layer": layer, "position": self.position, "block": self.block, "top_k": self.top_k}


@dataclass(frozen=True)
class ComparisonOptions:
    positions: tuple[int, int] | None = None  # [start, stop) window; None: all


@dataclass(frozen=True)
class LanguageOptions:
    position: int | None = None
    words: tuple[str, ...] = ()  # tracked words, read by their first token
    lens: str = "logit"

    def check(self) -> None:
        check_position_value(self.position)
        check_lens(self.lens)


FIT_KINDS = ("linear", "tuned", "jacobian")  # jacobian: imported from a checkpoint only


@dataclass(frozen=True)
class FitOptions:
    kind: str = "linear"
    corpus_file: str | None = None  # None: the shipped corpus
    checkpoint: str | None = None  # a checkpoint to import: a tuned-lens folder (kind tuned), a Jacobian-lens file
    steps: int | None = None  # tuned-lens training steps (None: the default)

    def check(self) -> None:
        if self.kind not in FIT_KINDS:
            raise LensError(f"unknown lens kind {self.kind!r} to fit; choose {', '.join(FIT_KINDS)}")
        if self.kind == "jacobian" and self.checkpoint is None:
            raise LensError("a Jacobian lens is imported, not fitted here: give its checkpoint with --checkpoint FILE "
                            "(a .pt of the jacobian-lens package, or a .safetensors of J.<block> matrices)")
        if self.checkpoint is not None and (self.kind not in ("tuned", "jacobian") or self.corpus_file is not None
                                            or self.steps is not None):
            raise LensError("a checkpoint is a tuned or a Jacobian lens: give --kind tuned or --kind jacobian, and "
                            "neither a corpus nor steps")


@dataclass(frozen=True)
class CellPatchOptions:
    """One residual-stream vector (``row``: 0 the embeddings, r the output of block r; ``position``) patched."""

    row: int
    position: int
    lens: LensOptions = LensOptions()

    def check(self, n_layers: int) -> None:
        self.lens.check()
        if isinstance(self.row, bool) or not isinstance(self.row, int) or not 0 <= self.row <= n_layers:
            raise LensError(f"row {self.row} is out of range: rows are 0 (the embeddings) to {n_layers}")
        check_position_value(self.position)
