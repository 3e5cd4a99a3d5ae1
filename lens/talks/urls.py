"""Every view's options as its page holds them in the URL, both ways.

A page binds its boxes to the URL (Streamlit's ``bind="query-params"``): the URL then holds each box's value as the
box shows it (a choice's label, a number, ``true``), and only where it differs from the box's default. ``URL_KEYS``
says, for every view a talk can draw, which URL key holds each option, how the option is written there and read
back, what the page shows when the key is absent (where that is not the view's own default), and when the box is
on the page at all (a box only one choice above it shows: the steering page's token box, the temperature of
sampled decoding). The tour writes its links with it (lens.tour.link_query); a talk's scene is read with it
(lens.talks.links.resolve). tests/test_talk_links.py holds it to every page's boxes.

``CHOICES`` says what each page's tab (or panel) opens: a view, which of its charts the tab shows, or nothing a
talk can draw (a table, a tab without an exported view).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from ..errors import LensError

MISSING = object()  # no value of the page's own: the view's default


@dataclass(frozen=True)
class Box:
    """One option of a view as its page's URL-bound box holds it."""

    key: str  # the URL key (the box's widget key)
    write: Callable[[Any], str] = str  # option value -> the URL's text (with ``joint``: the view's params -> text)
    read: Callable[[str], Any] = str  # the URL's text -> option value (LensError when it cannot be one)
    default: Any = MISSING  # what the page shows without the key (MISSING: the view's default)
    when: tuple | None = None  # (URL key, its values that show this box, that key's value when absent)
    otherwise: Any = MISSING  # the option when the box is not shown (MISSING: the view's default)
    joint: bool = False  # one box holds several options (a neuron's layer and number): write takes all params

    def text(self, value, params: dict) -> str:
        return self.write(params) if self.joint else self.write(value)


# ---------------------------------------------------------------- spellings

def url_flag(value) -> str:
    return "true" if value else "false"


def read_flag(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise LensError(f"{text!r} is not true or false")


def read_whole(text: str) -> int:
    try:
        x = float(text.strip())
    except ValueError:
        x = float("nan")
    if not x.is_integer():
        raise LensError(f"{text!r} is not an integer")
    return int(x)


def read_number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise LensError(f"{text!r} is not a number") from None


def write_number(value) -> str:
    """As Streamlit writes a number box's value: 5.0 as 5."""
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


def or_none(text: str) -> str | None:
    """A text box the page reads as ``box or None``: empty is the page's default."""
    return text or None


class Labels:
    """A choice box whose URL holds each option's label (``format_func``); a link may name the option itself where
    the page takes it (``short``: the page starts at it, lens.ui's link_options and link_to_label)."""

    def __init__(self, labels: dict, short: bool = False, what: str = ""):
        self.labels, self.short, self.what = dict(labels), short, what
        self.back = {str(v): k for k, v in self.labels.items()}

    def write(self, value) -> str:
        return str(value) if self.short else self.labels[value]

    def read(self, text: str):
        if text in self.back:
            return self.back[text]
        if self.short and text in self.labels:
            return text
        shown = [str(v) for v in self.labels.values()]
        raise LensError(f"{text[:40]!r} is not one of {', '.join(shown)}" + (f" ({self.what})" if self.what else ""))


def label(key: str, labels: dict, short: bool = False, **kw) -> Box:
    spelled = Labels(labels, short)
    return Box(key, spelled.write, spelled.read, **kw)


def one_of(key: str, values, **kw) -> Box:
    """A choice box whose URL holds the option itself."""
    return label(key, {v: str(v) for v in values}, **kw)


def flag(key: str, **kw) -> Box:
    return Box(key, url_flag, read_flag, **kw)


def whole(key: str, **kw) -> Box:
    return Box(key, write_number, read_whole, **kw)


def number(key: str, **kw) -> Box:
    return Box(key, write_number, read_number, **kw)


def text(key: str, **kw) -> Box:
    return Box(key, str, or_none, **kw)


NO_BOX = "-"


def fixed() -> Box:
    """An option the page has no box for: the page computes it (the last 48 positions of a long prompt for early
    exit, the layers attention flow can solve, a fixed number of new tokens) or never changes it (the steering
    page's greedy decoding); a link does not carry it, and lens.talks.links fills in what the page computes."""
    return Box(NO_BOX, when=(NO_BOX, (), ""))


MULTI = ("noise_on",)
PAIR_KEYS = ("clean", "corrupt", "patch_target", "foil")  # the experiment's four boxes (ui/experiment.py)
CLEAN_ONLY = ("noise-trace",)  # views of the experiment that read its clean prompt alone  # multi-choice boxes: the URL repeats the key; a scene keeps the values one per line


def _noise_labels(params: dict) -> str:
    """The noise box's options are "position·token" (read back by the number before the dot). Written without the
    token, which needs the tokenizer: such a link draws in a talk, but the page itself would not take it."""
    return "\n".join(str(p) for p in params["subject"])


def _noise_positions(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("\n"):
        head = part.split("·", 1)[0].strip()
        try:
            out.append(int(head))
        except ValueError:
            raise LensError(f"{part[:40]!r} is not a token of the prompt (position·token)") from None
    return tuple(out)


# ---------------------------------------------------------------- what the pages offer (their labels)

PROJECTION_METHODS = {"pca": "PCA", "umap": "UMAP"}
PATCH_SITE_LABELS = {"resid": "Residual stream", "attn": "Attention", "mlp": "MLP", "head": "Heads"}
WORD = "word"  # the projection page's word box: "corpus_word" for a corpus, "word" for a prompt
GENERATE_CHARTS = {"lens": "Lens, token by token", "attention": "Where each token looked"}
DECODING = ("Greedy", "Sampled")
SAMPLED_TEMPERATURE = 0.8  # the generate page's temperature slider starts here
ALIGN = {"centre": "centred", "start": "from it"}
COMPOSITIONS = {"q": "Q (queries read it)", "k": "K (keys read it)", "v": "V (values read it)"}
STEER_UNITS = {"norm": "× norm", "raw": "raw"}
STEER_WHERE = {"all": "all", "after-prompt": "after prompt", "front": "front"}
STEER_TOKEN = " love"  # the steering page's token box starts here
NEURONS_TOKEN, NEURONS_TOP = " Paris", 10  # the neurons page's boxes start here
CIRCUIT_RANKS = {"help": "edges that help", "size": "largest |score|"}
IG_STEPS = 5  # the circuits page's integrated-gradients switch: 5 steps
ANATOMY_TABS = ("Norms & change", "Skip & swap", "Similarity", "Outliers", "Token erasure", "Autocontrastive")
STEER_TABS = ("Lens difference", "Both lenses", "Dose-response")


def url_measure(key: str) -> str:
    """The projection page's measure box lists the measures by name, and its URL holds the name."""
    from ..views.projection import measure_title

    return measure_title(key)


def read_measure(text: str) -> str:
    from ..results import EXPLANATIONS
    from ..views.projection import SENSES

    return Labels({k: url_measure(k) for k in (*EXPLANATIONS, SENSES)}).read(text)


def _neuron(index: int):
    def read(text: str) -> int:
        from ..figures.weights import parse_neuron

        picked = parse_neuron(text)
        if picked is None:
            raise LensError(f"{text[:40]!r} names no neuron (L<layer> N<neuron>)")
        return picked[index]
    return read


def _neuron_name(params: dict) -> str:
    from ..figures.weights import neuron_name

    return neuron_name(int(params["layer"]), int(params["neuron"]))


def _ig_read(text: str) -> int:
    return IG_STEPS if read_flag(text) else 0


def _steer_vector(kind: str) -> tuple:
    return ("steer_vector", (kind,), "contrast")


def _first_probe_set() -> str:
    from ..probes.data import SHIPPED

    return next(iter(SHIPPED))


class _Lazy:
    """A page default known only when asked (the first shipped probe set): read when a link lacks it."""

    def __init__(self, get):
        self.get = get


def _metrics() -> dict:
    from ..figures.logit_lens import METRICS

    return {k: m.label for k, m in METRICS.items()}


def _lenses() -> dict:
    from ..options import LENS_LABELS

    return dict(LENS_LABELS)


def _build() -> dict[str, dict[str, Box]]:
    from ..figures.attention import SCORES
    from ..figures.projection import COLOR_BY
    from ..steering.options import MODES

    metrics, lenses = _metrics(), _lenses()
    gen_metrics = {k: v for k, v in metrics.items() if not k.startswith("target")}
    contrast = _steer_vector("contrast")
    site = label("site", PATCH_SITE_LABELS)
    return {
        # Read the layers
        "logit-lens": {"metric": label("metric", metrics, short=True), "target": text("target"),
                       "stride": whole("stride"), "top_k": whole("top_k"), "lens": label("lens", lenses, short=True),
                       "exits": flag("exits")},
        "lens-comparison": {},
        "early-exit": {"lens": label("lens", lenses, short=True), "positions": fixed()},
        "language": {"track": text("track"), "lens": label("lens", lenses, short=True), "position": fixed()},
        "generate": {"max_new_tokens": whole("new_tokens"),
                     "temperature": number("temperature", default=SAMPLED_TEMPERATURE,
                                           when=("decoding", DECODING[1:], DECODING[0]), otherwise=0.0),
                     "seed": whole("seed"), "metric": label("gen_metric", gen_metrics, short=True),
                     "stride": whole("gen_stride"), "chart": label("tab", GENERATE_CHARTS),
                     "skip_first": flag("gen_skip_first")},
        "anatomy": {"swap": flag("swap")},
        "contrastive": {"amateur_layer": whole("amateur"), "max_new_tokens": fixed()},
        # Geometry
        "projection": {"method": label("method", PROJECTION_METHODS), "dims": whole("dims"),
                       "color_by": one_of("color", COLOR_BY), "word": text(WORD),
                       "mode": label("mode", {"joint": "Trajectories", "aligned": "Layer by layer"}),
                       "rows": fixed(), "skip_first": flag("skip_first"), "skip_special": flag("skip_special"),
                       "rms_scale": flag("rms")},
        "geometry": {"word": text(WORD), "metric": Box("measure", url_measure, read_measure),
                     "skip_first": flag("skip_first"), "skip_special": flag("skip_special")},
        # Attention
        "rollout": {"position": whole("position"), "skip_first": flag("rollout_skip_first")},
        "flow": {"position": whole("position"), "skip_first": flag("rollout_skip_first"), "layers": fixed()},
        "routes": {"position": whole("position"), "threshold": number("threshold")},
        "heads": {"layer": whole("head_layer"), "metric": label("head_metric", SCORES, short=True)},
        # Cause & effect
        "patch": {"target": text("patch_target"), "foil": text("foil"), "site": site},
        "noise-trace": {"target": text("patch_target"), "foil": text("foil"), "site": site,
                        "samples": whole("noise_samples"), "seed": whole("noise_seed"),
                        "subject": Box("noise_on", write=_noise_labels, read=_noise_positions, joint=True),
                        "scale": fixed()},
        "dla": {"target": text("dla_target"), "foil": text("dla_foil"), "position": Box("dla_position", str, _position)},
        "sublayer-lens": {"target": text("dla_target")},
        "knockout": {"target": text("dla_target"), "sources": text("ko_sources"), "window": whole("ko_window"),
                     "align": label("ko_align", ALIGN, short=True)},
        "attribute": {"target": text("patch_target"), "foil": text("foil"), "site": site,
                      "qk_fix": flag("qk_fix", when=("site", ("Attention", "Heads"), "Residual stream"),
                                     otherwise=False),
                      "grad_drop": flag("grad_drop")},
        "circuit": {"target": text("patch_target"), "foil": text("foil"), "edges": whole("edges"),
                    "ig_steps": Box("ig", lambda n: url_flag(n), _ig_read),
                    "rank": label("rank", CIRCUIT_RANKS)},
        "neurons": {"token": text("token", default=NEURONS_TOKEN), "top": whole("top", default=NEURONS_TOP)},
        "neuron": {"layer": Box("neuron", read=_neuron(0), write=_neuron_name, joint=True),
                   "neuron": Box("neuron", read=_neuron(1), write=_neuron_name, joint=True)},
        "head-weights": {"composition": label("comp", COMPOSITIONS, short=True)},
        "steer": {"positive": Box("steer_pos", when=contrast), "negative": Box("steer_neg", when=contrast),
                  "token": text("steer_token", default=STEER_TOKEN, when=_steer_vector("token"), otherwise=None),
                  "saved": text("steer_saved", when=_steer_vector("saved"), otherwise=None),
                  "probe_set": Box("steer_probe", default=_Lazy(_first_probe_set), when=_steer_vector("probe"),
                                   otherwise=None),
                  "layer": whole("steer_layer"), "coef": number("steer_coef"),
                  "unit": label("steer_unit", STEER_UNITS, short=True), "mode": one_of("steer_mode", MODES),
                  "positions": label("steer_positions", STEER_WHERE, short=True),
                  "max_new_tokens": whole("steer_tokens"),
                  "temperature": fixed(), "seed": fixed(), "target": fixed()},
    }


def _position(text: str):
    from ..options import check_position_value

    if not text.strip():
        return None
    try:
        return check_position_value(text.strip())
    except LensError:
        raise LensError(f"{text[:40]!r} is not a position (0-based, negative from the end)") from None



_TABLE: dict | None = None


def url_keys() -> dict[str, dict[str, Box]]:
    """view -> option -> Box, for every view a link can carry (built once: it imports the figure modules' names)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _build()
    return _TABLE


def page_default(box: Box):
    d = box.default
    return d.get() if isinstance(d, _Lazy) else d


# ---------------------------------------------------------------- what a page's tab opens

@dataclass(frozen=True)
class Opens:
    """What one value of a page's choice key (a tab, a panel) shows: a view and which of its charts (indices into
    the rendered view's figures; None: the first), or nothing a talk draws (``view`` None, ``why``)."""

    view: str | None
    figures: tuple[int, ...] | None = None
    why: str = ""
    label: str = ""  # the tab's or panel's label, as the page shows it


NOT_A_VIEW = "has no chart a talk draws"


def _choices() -> dict[str, tuple[str, dict[str, Opens]]]:
    from ..views.attribution import TABS as ATTRIBUTION_TABS
    from ..views.weights import TABS as WEIGHT_TABS

    def both(short: dict[str, str], opens: dict[str, Opens]) -> dict[str, Opens]:
        """A page that takes a tab's short name too (?tab=cell)."""
        opens = named(opens)
        return {**opens, **{k: opens[v] for k, v in short.items()}}

    def named(opens: dict[str, Opens]) -> dict[str, Opens]:
        return {k: replace(o, label=o.label or k) for k, o in opens.items()}

    table = {"table": "shows a table, not a chart"}
    patching = {"grid": "Patching grid", "lens": "The lens of both prompts", "cell": "Patch one cell",
                "ablate": "Ablate", "models": "Two models", "noise": "Noise on the subject"}
    panels = {"compare": "Compare lenses", "exit": "Early exit", "language": "Language of each layer",
              "work": "Show the work"}
    return {
        "logit_lens": ("panel", both(panels, {
            "": Opens("logit-lens", label="the heatmap"), "Compare lenses": Opens("lens-comparison"), "Early exit": Opens("early-exit"),
            "Language of each layer": Opens("language"),
            # The heatmap stays above the walk through one cell (a clicked cell opens it): the scene is the heatmap,
            # and the cell (cell_layer, cell_pos) is named as not drawn.
            "Show the work": Opens("logit-lens")})),
        "generate": ("tab", {"Lens, token by token": Opens("generate"), "Where each token looked": Opens("generate"),
                             "Text, token by token": Opens(None, why=table["table"]),
                             "Sampling on the spot": Opens(None, why="is a live panel of controls and a table")}),
        "patching": ("tab", both(patching, {
            "Patching grid": Opens("patch"), "Noise on the subject": Opens("noise-trace"),
            "The lens of both prompts": Opens(None, why="has no exported view"),
            "Patch one cell": Opens(None, why="has no exported view"),
            "Ablate": Opens(None, why="has no exported view"),
            "Two models": Opens(None, why="compares with a second model, which a scene does not hold")})),
        "attribution": ("tab", {ATTRIBUTION_TABS["dla"]: Opens("dla", (0, 1)),
                                ATTRIBUTION_TABS["sublayer"]: Opens("sublayer-lens", (0, 1)),
                                ATTRIBUTION_TABS["knockout"]: Opens("knockout")}),
        "circuits": ("tab", both({"atp": "Attribution patching", "circuit": "Circuit"}, {
            "Attribution patching": Opens("attribute", (0, 1)), "Circuit": Opens("circuit", (0, 1))})),
        "neurons": ("tab", {WEIGHT_TABS["neurons"]: Opens("neurons"), WEIGHT_TABS["heads"]: Opens("head-weights", (0, 1))}),
        # The steering view draws the lens difference, the two lenses, the dose-response and its lens, in order.
        "steering": ("steer_tab", dict(zip(STEER_TABS, (Opens("steer", (0,)), Opens("steer", (1, 2)),
                                                        Opens("steer", (3, 4)))))),
        # lens.figures.anatomy.anatomy_figures: norms, change, skip, CKA, outliers, massive, erasure.
        "anatomy": ("tab", dict(zip(ANATOMY_TABS, (Opens("anatomy", (0, 1)), Opens("anatomy", (2,)),
                                                   Opens("anatomy", (3,)), Opens("anatomy", (4, 5)),
                                                   Opens("anatomy", (6,)), Opens("contrastive"))))),
    }


_CHOICES: dict | None = None


def choices() -> dict[str, tuple[str, dict[str, Opens]]]:
    """page -> (its choice key, {the key's value as a link holds it: what it opens}); the first entry is what the
    page opens without the key. Pages not listed choose by their views' own URL (the attention page's ?view=,
    the projection page's ?geometry=true)."""
    global _CHOICES
    if _CHOICES is None:
        _CHOICES = {page: (key, {k: replace(o, label=o.label or k) for k, o in opens.items()})
                    for page, (key, opens) in _choices().items()}
    return _CHOICES


# A view that a page shows when the link names what it needs (a neuron picked on the Neurons tab opens its page;
# presenting, it takes the list's place).
OPENED_BY = {"neuron": ("neurons", "neuron")}  # URL key -> (the view it replaces, the view it opens)
