"""A view as code that runs as it is: a Python script that prints the view's numbers as JSON, and a Jupyter
notebook that also draws its chart.

Nothing is hidden: the model, the exact texts and every option are written out as Python literals, and the
code makes the same backend call the view and its ``python -m lens`` command make, with the options written
out as the command would pass them. The printed JSON is the command's ``--json``: ``lens.serialize.to_json_dict``
of the result (``generate`` adds its token table, as the command does). With LayerLens installed
(``pip install -e .`` in the checkout) a script runs from any folder.

``python_script(rendered)`` and ``notebook(rendered)`` take a ``lens.views.RenderedView``;
``python_script(view, model, texts, params)`` and ``notebook(...)`` the same without one (a page that drew
the view itself). Both return text: the script, or the notebook's JSON (nbformat 4, written with the
standard library).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from .errors import LensError
from .views import RenderedView, view_named
from .views.entry import SUITE, TWO_PROMPTS

FORMATS = {".py": "python", ".ipynb": "ipynb"}  # an --out suffix and the code it asks for
BACKENDS = ("local", "nnsight")


@dataclass
class Code:
    """One view's code for given texts and options."""

    imports: list[str]  # what the computation needs, besides the backend's imports
    compute: str  # lines that compute the result(s) from PROMPT (TEXTS; CLEAN and CORRUPT) with `backend`
    printed: str  # the JSON object printed, as a Python expression
    command: list[str] | None  # the `python -m lens` command that prints the same JSON (model and texts added
    # by the caller); None: no command computes it
    draw_imports: list[str]
    draw: str  # lines that make `fig` (or `figures`, several charts) from the results
    chart_only: dict = field(default_factory=dict)  # options that change the chart only, not the numbers
    several: bool = False  # `figures`, a list, instead of `fig`


def _py(value) -> str:
    """A Python literal: repr() writes any text exactly (escapes for what is not printable)."""
    return repr(value)


def _kw(**options) -> str:
    return ", ".join(f"{k}={_py(v)}" for k, v in options.items())


def _new(cls: str, **options) -> str:
    """``cls(k=v, …)`` as code."""
    return f"{cls}({_kw(**options)})"


def _flag(flag: str, value) -> list[str]:
    """A command's option where it is given (None leaves it to the command's default)."""
    return [] if value is None else [flag, value if isinstance(value, str) else repr(value)]


def _position(value) -> int | None:
    from .options import check_position_value as checked

    return checked(value)


def _words(track) -> tuple[str, ...]:
    return tuple(w for w in (track.split(",") if track else []) if w)  # as the view and `language --track` read it


def _logit_lens(src, p, texts) -> Code:
    from .figures.logit_lens import METRICS
    from .options import LensOptions

    if p["metric"] not in METRICS:
        raise LensError(f"unknown colour metric {p['metric']!r}; choose from {', '.join(METRICS)}")
    o = LensOptions(top_k=int(p["top_k"]), target=p["target"], lens=p["lens"])
    o.check()
    if int(p["stride"]) < 1:
        raise LensError(f"the stride is a whole number from 1, not {p['stride']!r}")
    chart = {"metric": p["metric"], "stride": int(p["stride"]), "exits": bool(p["exits"])}
    return Code(["from lens.options import LensOptions"],
                f"result = backend.logit_lens({src}, "
                f"{_new('LensOptions', top_k=o.top_k, target=o.target, lens=o.lens)})",
                "to_json_dict(result)",
                ["logit-lens", *_flag("--top-k", o.top_k), *_flag("--target", o.target), *_flag("--lens", o.lens)],
                ["from lens.figures.logit_lens import logit_lens_figure"],
                f"fig = logit_lens_figure(result, {_kw(metric=chart['metric'], stride=chart['stride'])}, "
                f"show_exit={chart['exits']})", chart)


def _lens_comparison(src, p, texts) -> Code:
    return Code([], f"result = backend.lens_comparison({src})", "to_json_dict(result)", ["compare-lenses"],
                ["from lens.figures.lens_comparison import lens_comparison_figure"],
                "fig = lens_comparison_figure(result)")


def _early_exit(src, p, texts) -> Code:
    from .options import check_lens
    from .views.logit_lens import position_window

    check_lens(p["lens"])
    window = position_window(p["positions"])  # the page's last 48 of a long prompt; None: every position
    if window is None:
        call = _new("LensOptions", top_k=1, lens=p["lens"])
        command = ["logit-lens", "--top-k", "1", "--lens", p["lens"]]
    else:  # `logit-lens` reads every position: no command prints this window's JSON
        call, command = _new("LensOptions", top_k=1, positions=window, lens=p["lens"]), None
    return Code(["from lens.options import LensOptions"], f"result = backend.logit_lens({src}, {call})",
                "to_json_dict(result)", command,
                ["from lens.figures.early_exit import early_exit_figure"], "fig = early_exit_figure(result)")


def _language(src, p, texts) -> Code:
    from .options import LanguageOptions

    o = LanguageOptions(position=_position(p["position"]), words=_words(p["track"]), lens=p["lens"])
    o.check()
    return Code(["from lens.options import LanguageOptions"],
                f"result = backend.latent_language({src}, "
                f"{_new('LanguageOptions', position=o.position, words=o.words, lens=o.lens)})",
                "to_json_dict(result)",
                ["language", *_flag("--position", o.position), *_flag("--track", ",".join(o.words) or None),
                 *_flag("--lens", o.lens)],
                ["from lens.figures.language import language_figure"], "fig = language_figure(result)")


def _generate(src, p, texts) -> Code:
    from .figures.logit_lens import METRICS
    from .options import GenerateOptions
    from .views.generate import CHARTS

    if p["chart"] not in CHARTS:
        raise LensError(f"unknown generate chart {p['chart']!r}; choose {' or '.join(CHARTS)}")
    if p["metric"] not in METRICS or p["metric"].startswith("target"):
        raise LensError(f"unknown colour metric {p['metric']!r}; choose probability, entropy or kl")
    o = GenerateOptions(int(p["max_new_tokens"]), float(p["temperature"]), int(p["seed"]))
    o.check()
    options = "options = " + _new("GenerateOptions", max_new_tokens=o.max_new_tokens, temperature=o.temperature,
                                  seed=o.seed) + "\n"
    if p["chart"] == "attention":  # no command computes where each new token looked
        skip = bool(p["skip_first"])
        return Code(["from lens.options import GenerateOptions"],
                    options + f"looked = backend.generation_attention({src}, options)  # generates, then one "
                              "attention pass over prompt and continuation",
                    "to_json_dict(looked)", None,
                    ["from lens.figures.generation import generation_attention_figure"],
                    f"fig = generation_attention_figure(looked, skip_first={skip})", {"skip_first": skip})
    chart = {"metric": p["metric"], "stride": int(p["stride"])}
    return Code(["from lens.figures.generation import token_table",
                 "from lens.options import GenerateOptions, LensOptions"],
                options +
                f"gen = backend.generate({src}, options)\n"
                f"lens = backend.generation_lens({src}, options, LensOptions(top_k=1))  # top-1 per layer and position",
                '{**to_json_dict(gen), "steps": token_table(gen, lens)}',  # as `generate --json` prints it
                ["generate", *_flag("--max-new-tokens", o.max_new_tokens), *_flag("--temperature", o.temperature),
                 *_flag("--seed", o.seed)],
                ["from lens.figures.generation import generation_figure"],
                f"fig = generation_figure(gen, lens, {_kw(**chart)})", chart)


def _rollout(src, p, texts, flow: bool = False) -> Code:
    from .options import RolloutOptions

    o = RolloutOptions(_position(p["position"]))
    o.check()
    skip = bool(p["skip_first"])  # None: the page's default, the first token's column kept
    if flow:
        given = p["layers"]  # the layer rows solved (the page: the last one alone for a long prompt); None: all
        given = [given] if isinstance(given, int) else list(given or ())
        if any(isinstance(l, bool) or int(l) < 1 for l in given):
            raise LensError(f"flow layers are numbered from 1, not {p['layers']!r}")
        layers = tuple(int(l) for l in given) or None
        options = _new("FlowOptions", position=o.position, layers=layers)
        command = ["rollout", "--flow", *_flag("--position", o.position),
                   *_flag("--layers", layers and ",".join(map(str, layers)))]
    else:
        options = _new("RolloutOptions", position=o.position)
        command = ["rollout", *_flag("--position", o.position)]
    kind, call = ("FlowOptions", "attention_flow") if flow else ("RolloutOptions", "rollout")
    return Code([f"from lens.options import {kind}"], f"result = backend.{call}({src}, {options})",
                "to_json_dict(result)", command, ["from lens.figures.attention import rollout_figure"],
                f"fig = rollout_figure(result, skip_first={skip})", {"skip_first": skip})


def _flow(src, p, texts) -> Code:
    return _rollout(src, p, texts, flow=True)


def _routes(src, p, texts) -> Code:
    from .options import RouteOptions

    o = RouteOptions(_position(p["position"]), float(p["threshold"]))
    o.check()
    return Code(["from lens.options import RouteOptions"],
                f"result = backend.route_graph({src}, "
                f"{_new('RouteOptions', position=o.position, threshold=o.threshold)})",
                "to_json_dict(result)",
                ["routes", *_flag("--position", o.position), *_flag("--threshold", o.threshold)],
                ["from lens.figures.attention import route_figure"], "fig = route_figure(result)")


def _heads(src, p, texts) -> Code:
    from .figures.attention import SUMMARY_METRICS

    layer, metric = p["layer"], p["metric"]
    if layer is None:
        if metric not in SUMMARY_METRICS:
            raise LensError(f"unknown head score {metric!r}; choose from {', '.join(SUMMARY_METRICS)}")
        return Code([], f"result = backend.head_summary({src})  # every head's scores", "to_json_dict(result)",
                    ["heads"], ["from lens.figures.attention import head_summary_figure"],
                    f"fig = head_summary_figure(result, {metric!r})", {"metric": metric})
    if isinstance(layer, bool) or int(layer) < 1:
        raise LensError(f"layer {layer} is out of range: layers are numbered from 1")
    return Code(["from lens.options import HeadOptions"],
                f"result = backend.head_patterns({src}, {_new('HeadOptions', layer=int(layer))})  # one layer's",
                "to_json_dict(result)", ["heads", *_flag("--layer", int(layer))],
                ["from lens.figures.attention import head_grid_figure"], "fig = head_grid_figure(result)",
                {"metric": metric})


def _projection(src, p, texts) -> Code:
    from .figures.projection import COLOR_BY
    from .options import ProjectionOptions
    from .senses import senses_of

    corpus = not isinstance(texts, str)
    skip_first, skip_special, rms_scale = (_on(p[k]) for k in ("skip_first", "skip_special", "rms_scale"))
    o = ProjectionOptions(method=p["method"], mode=p["mode"] or "joint", dims=int(p["dims"]), rms_scale=rms_scale,
                          skip_first=skip_first, skip_special=skip_special)
    o.check()
    color_by = p["color_by"] or ("text" if corpus else "layer")  # the view's default colouring
    if color_by not in COLOR_BY:
        raise LensError(f"unknown colouring {color_by!r}; choose from {', '.join(COLOR_BY)}")
    options = _new("ProjectionOptions", method=o.method, mode=o.mode, dims=o.dims, rms_scale=o.rms_scale,
                   skip_first=o.skip_first, skip_special=o.skip_special)
    compute = f"result = backend.projection({src}, {options})"
    command = ["project", *_flag("--method", o.method), *_flag("--mode", o.mode), *_flag("--dims", o.dims),
               *([] if o.rms_scale else ["--no-rms-scale"]), *([] if o.skip_first else ["--include-first"]),
               *([] if o.skip_special else ["--include-special"])]
    imports = ["from lens.options import ProjectionOptions"]
    if o.mode == "aligned":  # one PCA per layer, played frame by frame (the word and rows are the paths' only)
        return Code(imports, compute, "to_json_dict(result)", command,
                    ["from lens.figures.projection import aligned_figure"],
                    f"fig = aligned_figure(result, color_by={color_by!r})", {"color_by": p["color_by"]})
    word = p["word"]
    senses = senses_of(texts) if corpus else None
    lines, chart = [], [f"color_by={color_by!r}"]
    rows = None
    if p["rows"] is not None:
        lo, hi = sorted(int(x) for x in p["rows"])
        if lo < 0:
            raise LensError(f"rows {lo}–{hi} are out of range: rows are numbered from 0 (the embeddings)")
        rows = [lo, hi]
        lines.append(f"rows = list(range({lo}, {hi + 1}))  # the rows shown: result.layers[{lo}] to [{hi}]")
        chart.append("rows=rows")
    if word:
        lines.append(f"highlight = word_matches(result.tokens, {word!r})  # the word's occurrences, drawn boldly")
        chart.append("highlight=highlight")
    if corpus:
        chart.append(f"sentences={src}")  # each bold path named by its text
    if senses:
        lines.append(f"senses = {senses!r}  # each text's sense (a shipped corpus): one colour per sense")
        chart.append("senses=senses")
    lines.append(f"fig = trajectory_figure(result, {', '.join(chart)})")
    return Code(imports, compute, "to_json_dict(result)", command,
                ["from lens.figures.projection import trajectory_figure",
                 *(["from lens.model.tokens import word_matches"] if word else [])],
                "\n".join(lines), {"color_by": p["color_by"], "word": word, "rows": rows})


def _on(option) -> bool:
    """A switch the page has on by default: None (the page's default) is on, as the views read it."""
    return True if option is None else bool(option)


def _geometry(src, p, texts) -> Code:
    from .results import EXPLANATIONS
    from .views.projection import SENSES

    word, metric = p["word"], p["metric"]
    skip_first, skip_special = _on(p["skip_first"]), _on(p["skip_special"])  # None: left out, the page's default
    left_out = [*([] if skip_first else ["--include-first"]), *([] if skip_special else ["--include-special"])]
    if metric == SENSES:
        from .senses import senses_of

        if isinstance(texts, str) or senses_of(texts) is None:
            raise LensError("the senses of a word are compared across the sentences of a shipped corpus with senses")
        if not (word or "").strip():
            raise LensError("name the word whose senses to compare")
        return Code(["from lens.options import GeometryOptions", "from lens.senses import sense_similarity"],
                    f"result = sense_similarity(backend, {src}, {word!r}, options="
                    f"{_new('GeometryOptions', skip_first=skip_first, skip_special=skip_special)})"
                    "  # every pair of texts; their senses known",
                    "to_json_dict(result)", None, ["from lens.figures.projection import sense_figure"],
                    "fig = sense_figure(result)")
    if metric is not None and metric not in EXPLANATIONS:
        raise LensError(f"unknown geometry measure {metric!r}; choose from {', '.join(EXPLANATIONS)} or {SENSES}")
    keys = [metric] if metric else list(EXPLANATIONS)
    draw = ("figures = [layer_similarity_figure(result) if key == 'layer_similarity' else metric_figure(result, key)\n"
            f"           for key in {keys!r}]\n"
            "figures = [f for f in figures if f is not None]  # a word's measures need a word")
    return Code(["from lens.options import GeometryOptions"],
                f"result = backend.geometry({src}, "
                f"{_new('GeometryOptions', skip_first=skip_first, skip_special=skip_special, word=word)})",
                "to_json_dict(result)", ["geometry", *left_out, *_flag("--word", word)],
                ["from lens.figures.projection import layer_similarity_figure, metric_figure"], draw,
                {"metric": metric}, several=True)


def _patch(src, p, texts) -> Code:
    from .options import PatchOptions

    if not p["target"]:
        raise LensError("the patch view needs a target token (e.g. ' Paris')")
    o = PatchOptions(target=p["target"], foil=p["foil"], site=p["site"])
    o.check()
    return Code(["from lens.options import PatchOptions"],
                f"result = backend.patch(CLEAN, CORRUPT, "
                f"{_new('PatchOptions', target=o.target, foil=o.foil, site=o.site)})",
                "to_json_dict(result)",
                ["patch", *_flag("--target", o.target), *_flag("--foil", o.foil), *_flag("--site", o.site)],
                ["from lens.figures.patching import patch_figure"], "fig = patch_figure(result)")


SUITE_FILE = "suite.jsonl"  # the command reads the suite from a file: SUITE, saved under this name


def _suite(src, p, texts) -> Code:
    from .figures.suites import MEASURES
    from .suites.options import SuiteOptions

    o = SuiteOptions(lens=p["lens"])
    o.check()
    if p["measure"] not in MEASURES:
        raise LensError(f"unknown measure {p['measure']!r}; choose from {', '.join(MEASURES)}")
    by = p["by"] or None
    grouped = f"groups = aggregate(result, {_py(by)})\n" if by else ""
    return Code(["from lens.suites.aggregate import aggregate", "from lens.suites.options import SuiteOptions",
                 "from lens.suites.suite import parse_jsonl", "from lens.suites.table import suite_json"],
                f"suite = parse_jsonl({src}, {_py(SUITE_FILE)})\n"
                f"result = backend.lens_suite(suite, {_new('SuiteOptions', lens=o.lens)})\n{grouped}",
                f"suite_json(result, aggregate(result){', groups' if by else ''})",
                ["suite", "--lens", o.lens, *_flag("--by", by)],
                ["from lens.figures.suites import exit_figure, suite_lines_figure"],
                (f"shown = {'groups' if by else 'aggregate(result)'}\n"
                 f"figures = [suite_lines_figure(shown, {_py(p['measure'])}, result, {_py(p['statistic'])}), "
                 "exit_figure(shown)]"),
                {"measure": p["measure"], "statistic": p["statistic"]}, several=True)


def _pair_suite(src, p, texts) -> Code:
    from .suites.options import PairSuiteOptions

    o = PairSuiteOptions(site=p["site"])
    o.check()
    return Code(["from lens.suites.options import PairSuiteOptions", "from lens.suites.suite import parse_jsonl"],
                f"suite = parse_jsonl({src}, {_py(SUITE_FILE)})\n"
                f"result = backend.patch_suite(suite, {_new('PairSuiteOptions', site=o.site)})",
                "to_json_dict(result)", ["suite", "--site", o.site],
                ["from lens.figures.suites import pair_grid_figure"], "fig = pair_grid_figure(result)")


CODE = {"suite": _suite, "pair-suite": _pair_suite, "logit-lens": _logit_lens, "lens-comparison": _lens_comparison, "early-exit": _early_exit,
        "language": _language, "generate": _generate, "rollout": _rollout, "flow": _flow, "routes": _routes,
        "heads": _heads, "projection": _projection, "geometry": _geometry, "patch": _patch}


def _noise_trace(src, p, texts) -> Code:
    from .options import NoiseOptions

    subject = p["subject"]
    subject = tuple(int(x) for x in subject.split(",") if x.strip()) if isinstance(subject, str) else tuple(subject)
    o = NoiseOptions(target=p["target"] or None, subject=subject, foil=p["foil"], site=p["site"],
                     samples=int(p["samples"]), seed=int(p["seed"]), scale=float(p["scale"]))
    o.check()
    options = _new("NoiseOptions", target=o.target, subject=o.subject, foil=o.foil, site=o.site, samples=o.samples,
                   seed=o.seed, scale=o.scale)
    return Code(["from lens.options import NoiseOptions"],
                f"result = backend.noise_trace({src}, "
                f"{options})",
                "to_json_dict(result)",
                ["noise-trace", "--subject", ",".join(map(str, o.subject)), *_flag("--target", o.target),
                 *_flag("--foil", o.foil), "--site", o.site, "--samples", str(o.samples), "--seed", str(o.seed),
                 "--scale", repr(o.scale)],
                ["from lens.figures.patching import noise_figure"], "fig = noise_figure(result)")


CODE["noise-trace"] = _noise_trace  # causal tracing with noise, an option of Compare & patch


def _dla(src, p, texts) -> Code:
    from .attribution.options import DLAOptions

    o = DLAOptions(target=p["target"] or None, foil=p["foil"] or None, position=_position(p["position"]))
    o.check()
    return Code(["from lens.attribution.options import DLAOptions"],
                f"result = backend.dla({src}, {_new('DLAOptions', target=o.target, foil=o.foil, position=o.position)})",
                "to_json_dict(result)",
                ["dla", *_flag("--target", o.target), *_flag("--foil", o.foil), *_flag("--position", o.position)],
                ["from lens.figures.attribution import dla_figure, dla_layers_figure"],
                "figures = [dla_figure(result), dla_layers_figure(result)]", several=True)


def _sublayer_lens(src, p, texts) -> Code:
    from .attribution.options import SublayerOptions

    o = SublayerOptions(target=p["target"] or None)
    o.check()
    return Code(["from lens.attribution.options import SublayerOptions"],
                f"result = backend.sublayer_lens({src}, {_new('SublayerOptions', target=o.target)})",
                "to_json_dict(result)", ["sublayer-lens", *_flag("--target", o.target)],
                ["from lens.figures.attribution import sublayer_figure, sublayer_span"],
                "span = sublayer_span(result)  # one colour range for both\n"
                "figures = [sublayer_figure(result, 'attn', span=span), sublayer_figure(result, 'mlp', span=span)]",
                several=True)


def _knockout(src, p, texts) -> Code:
    from .attribution.options import KnockoutOptions, sources_from_text

    sources = sources_from_text(p["sources"])
    o = KnockoutOptions(target=p["target"] or None, sources=sources,
                        window=None if p["window"] is None else int(p["window"]), align=p["align"])
    o.check()
    return Code(["from lens.attribution.options import KnockoutOptions"],
                f"result = backend.knockout({src}, "
                f"{_new('KnockoutOptions', target=o.target, sources=o.sources, window=o.window, align=o.align)})",
                "to_json_dict(result)",
                ["knockout", *_flag("--target", o.target),
                 *_flag("--sources", None if sources is None else ",".join(map(str, sources))),
                 *_flag("--window", o.window), *_flag("--align", o.align)],
                ["from lens.figures.attribution import knockout_figure"], "fig = knockout_figure(result)")


CODE.update({"dla": _dla, "sublayer-lens": _sublayer_lens, "knockout": _knockout})  # who writes the answer


def _attribute(src, p, texts) -> Code:
    from .circuits.options import AttributeOptions

    if not p["target"]:
        raise LensError("this view needs a target token (e.g. ' Paris')")
    o = AttributeOptions(target=p["target"], foil=p["foil"], site=p["site"], qk_fix=bool(p["qk_fix"]), verify=True,
                         grad_drop=bool(p.get("grad_drop", False)))
    o.check()
    return Code(["from lens.circuits.options import AttributeOptions"],
                f"result = backend.attribute(CLEAN, CORRUPT, "
                f"{_new('AttributeOptions', target=o.target, foil=o.foil, site=o.site, qk_fix=o.qk_fix, verify=True, grad_drop=o.grad_drop)})",
                "to_json_dict(result)",
                ["attribute", *_flag("--target", o.target), *_flag("--foil", o.foil), *_flag("--site", o.site),
                 *(["--qk-fix"] if o.qk_fix else []), *(["--grad-drop"] if o.grad_drop else []), "--verify"],
                ["from lens.figures.circuits import estimate_figure, scatter_figure"],
                "figures = [estimate_figure(result), scatter_figure(result)]", several=True)


def _circuit(src, p, texts) -> Code:
    from .circuits.options import CircuitOptions

    if not p["target"]:
        raise LensError("this view needs a target token (e.g. ' Paris')")
    o = CircuitOptions(target=p["target"], foil=p["foil"], edges=int(p["edges"]), ig_steps=int(p["ig_steps"]),
                       rank=p.get("rank", "help"))
    o.check()
    return Code(["from lens.circuits.options import CircuitOptions"],
                f"result = backend.circuit(CLEAN, CORRUPT, "
                f"{_new('CircuitOptions', target=o.target, foil=o.foil, edges=o.edges, ig_steps=o.ig_steps, rank=o.rank)})",
                "to_json_dict(result)",
                ["circuit", *_flag("--target", o.target), *_flag("--foil", o.foil), "--edges", str(o.edges),
                 *(["--ig-steps", str(o.ig_steps)] if o.ig_steps else []), "--rank", o.rank],
                ["from lens.figures.circuits import circuit_figure, faithfulness_figure"],
                "figures = [circuit_figure(result), faithfulness_figure(result)]", several=True)


CODE.update({"attribute": _attribute, "circuit": _circuit})  # attribution and circuits (lens/circuits/)


def _neurons(src, p, texts) -> Code:
    from .weights.options import NeuronOptions

    o = NeuronOptions(token=p["token"] or None, top=int(p["top"]))
    o.check()
    return Code(["from lens.weights.options import NeuronOptions"],
                f"result = backend.neurons({_new('NeuronOptions', token=o.token, top=o.top)}, {src})",
                "to_json_dict(result)", ["neurons", *_flag("--token", o.token), "--top", str(o.top)],
                ["from lens.figures.weights import neurons_figure"], "fig = neurons_figure(result)")


def _neuron(src, p, texts) -> Code:
    from .weights.options import NeuronPageOptions

    if p["layer"] is None or p["neuron"] is None:
        raise LensError("this view needs a neuron: its layer (1-based) and its number (0-based)")
    o = NeuronPageOptions(layer=int(p["layer"]), neuron=int(p["neuron"]))
    o.check()
    return Code(["from lens.weights.options import NeuronPageOptions"],
                f"result = backend.neuron({src}, {_new('NeuronPageOptions', layer=o.layer, neuron=o.neuron)})",
                "to_json_dict(result)", ["neuron", "--layer", str(o.layer), "--neuron", str(o.neuron)],
                ["from lens.figures.weights import neuron_activation_figure, neuron_tokens_figure"],
                "figures = [neuron_tokens_figure(result), neuron_activation_figure(result)]", several=True)


def _head_weights(src, p, texts) -> Code:
    from .weights.options import HeadWeightOptions

    o = HeadWeightOptions(composition=p["composition"])
    o.check()
    return Code(["from lens.weights.options import HeadWeightOptions"],
                f"result = backend.head_weights({_new('HeadWeightOptions', composition=o.composition)})",
                "to_json_dict(result)", ["heads-weights", "--composition", o.composition],
                ["from lens.figures.weights import composition_figure, copying_figure"],
                "figures = [copying_figure(result), composition_figure(result)]", several=True)


CODE.update({"neurons": _neurons, "neuron": _neuron, "head-weights": _head_weights})  # the weight space


def _sh(arg: str) -> str:
    """One shell word for ``arg``: quoted as it is, or in bash's $'…' with escapes where it holds a new line or
    another character that does not print."""
    if arg.isprintable():
        return shlex.quote(arg)
    out = []
    for ch in arg:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
    return "$'" + "".join(out) + "'"


@dataclass
class _Parts:
    title: str
    about: tuple[str, ...]
    imports: str
    settings: str
    compute: str
    printed: str
    draw: str
    command: str | None
    source: str  # PROMPT, CLEAN, TEXTS or SUITE: what the code reads


def _parts(view, model: str | None = None, texts=None, params: dict | None = None, *, device: str = "cpu",
           backend: str = "local", trust_remote_code: bool = False) -> _Parts:
    from .model.registry import DEFAULT_MODEL

    if isinstance(view, RenderedView):  # its model is the model's name: a folder's or a .gguf file's needs model=
        view, model, texts, params = view.view.name, model or view.model, view.texts, view.params
    v = view_named(view)
    model = model or DEFAULT_MODEL
    params = dict(params or {})
    unknown = sorted(set(params) - set(v.params))
    if unknown:
        raise LensError(f"the {v.name} view has no option {', '.join(unknown)}; "
                        f"it takes {', '.join(v.params) or 'none'}")
    p = {**v.params, **{k: x for k, x in params.items() if x is not None}}
    if backend not in BACKENDS:
        raise LensError(f"code runs the model with the local or the nnsight backend, not {backend!r}")
    if texts is None:
        raise LensError(f"the {v.name} view needs a prompt")
    if v.reads == TWO_PROMPTS:
        if isinstance(texts, str) or len(texts) != 2:
            raise LensError(f"the {v.name} view takes two prompts: the clean one and the corrupted one")
        texts = list(texts)
        settings = f"CLEAN = {_py(texts[0])}  # the clean prompt\nCORRUPT = {_py(texts[1])}  # the corrupted prompt\n"
        cli_texts, src = ["--clean-prompt", texts[0], "--corrupt-prompt", texts[1]], "CLEAN"
    elif v.reads == SUITE:
        if not isinstance(texts, str):
            raise LensError(f"the {v.name} view takes a suite as JSONL text (Suite.to_jsonl())")
        settings = ("SUITE = (  # the suite: one JSON object a line\n"
                    + "".join(f"    {_py(line)}\n" for line in texts.splitlines(keepends=True)) + ")\n")
        what = "--pairs-file" if v.name == "pair-suite" else "--prompts-file"
        cli_texts, src = [what, SUITE_FILE], "SUITE"
    elif isinstance(texts, str):
        settings, cli_texts, src = f"PROMPT = {_py(texts)}\n", ["--prompt", texts], "PROMPT"
    elif v.reads == "prompt":
        raise LensError(f"the {v.name} view takes one prompt, not a list of texts")
    else:
        texts = list(texts)
        settings = "TEXTS = [  # each text is run on its own\n" + "".join(f"    {_py(t)},\n" for t in texts) + "]\n"
        cli_texts, src = ["--corpus-file", "texts.txt"], "TEXTS"
    code = CODE[v.name](src, p, texts)

    load = _kw(device=device) + (", trust_remote_code=True" if trust_remote_code else "")
    make = "nnsight_backend" if backend == "nnsight" else "local_backend"
    imports = ["import json", "", *sorted({f"from lens.engine_backend import {make}", *code.imports,
                                           "from lens.model.loading import load_model",
                                           "from lens.serialize import to_json_dict"})]
    settings = f"MODEL = {_py(model)}\n" + settings
    if code.chart_only:
        settings += f"# The chart's options (the numbers do not depend on them): {_kw(**code.chart_only)}\n"
    compute = (f"backend = {make}(load_model(MODEL, {load}), None)  # None: no result cache, all computed here\n"
               + code.compute + "\n")
    command = None
    if code.command is not None:
        args = [code.command[0], "--model", model, *cli_texts, *code.command[1:]]
        if device != "cpu":
            args += ["--device", device]
        if backend != "local" and code.command[0] != "patch":  # `patch` runs locally only; the numbers agree
            args += ["--backend", backend]
        if trust_remote_code:
            args += ["--trust-remote-code"]
        command = "python -m lens " + " ".join(_sh(a) for a in [*args, "--json"])
    draw = "\n".join(code.draw_imports) + "\n\n" + code.draw + "\n"
    draw += "for fig in figures:\n    fig.show()\n" if code.several else "fig.show()\n"
    return _Parts(v.title, v.about, "\n".join(imports) + "\n", settings, compute,
                  f"print(json.dumps({code.printed}, ensure_ascii=False))\n", draw, command, src)


def _said(parts: _Parts, what: str) -> str:
    """What the printed JSON is (``what``: the subject of the sentence), for the script's docstring and the
    notebook's first cell."""
    if parts.command is None:
        return (f"No `python -m lens` command computes this measure: {what} the result as "
                "lens.serialize.to_json_dict gives it, as the commands' --json do.")
    files = {"TEXTS": "\n(texts.txt: the TEXTS below, one per line)",
             "SUITE": f"\n({SUITE_FILE}: the SUITE below, as it is)"}.get(parts.source, "")
    return f"{what} the same JSON as this command:\n\n    {parts.command}{files}"


def python_script(view, model: str | None = None, texts=None, params: dict | None = None, **run) -> str:
    """A script that computes view ``view`` (a RenderedView, or a view's name with ``model``, ``texts`` and the
    view's ``params``) again and prints its numbers as JSON. ``model``: what ``load_model`` loads (a bundled or
    tiny name, a hub id, a folder or a .gguf file; a RenderedView names a folder's or file's model by its name
    only, so give the path). ``run``: ``device``, ``backend`` ("local" or "nnsight"), ``trust_remote_code``,
    as the command line's options. A LensError for an option the view would refuse."""
    parts = _parts(view, model, texts, params, **run)
    doc = (f"{parts.title}, computed again by LayerLens: the model, the exact texts and every option are below.\n\n"
           "Run it from any folder with the Python that has LayerLens (`pip install -e .` in the LayerLens "
           "checkout):\n\n"
           f"    python <this file>\n\n{_said(parts, 'It prints')}\n")
    # The docstring holds the command exactly: raw where it has backslashes, escaped where it has to be.
    if '"""' in doc:
        quote = '"""' + doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'
    else:
        quote = ('r"""' if "\\" in doc else '"""') + doc + '"""'
    return f'{quote}\n{parts.imports}\n{parts.settings}\n{parts.compute}\n{parts.printed}'


def notebook(view, model: str | None = None, texts=None, params: dict | None = None, **run) -> str:
    """The same as a Jupyter notebook (nbformat 4, as JSON text): imports and settings, the computation, the
    numbers printed, the chart drawn by the view's figure builder."""
    parts = _parts(view, model, texts, params, **run)

    def cell(kind: str, source: str) -> dict:
        out = {"cell_type": kind, "id": "", "metadata": {}, "source": source.strip("\n").splitlines(keepends=True)}
        if kind == "code":
            out.update(execution_count=None, outputs=[])
        return out

    about = "\n\n".join(parts.about)
    cells = [
        cell("markdown", f"# {parts.title}\n\n{about}\n\nComputed by LayerLens: the model, the exact texts and every "
                         "option are in the first cell. Run the cells top to bottom with a kernel whose Python has "
                         "LayerLens (`pip install -e .` in the LayerLens checkout). "
                         + _said(parts, "The print cell shows")),
        cell("code", parts.imports + "\n" + parts.settings),
        cell("code", parts.compute),
        cell("code", parts.printed),
        cell("code", parts.draw),
    ]
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i}"
    book = {"cells": cells,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(book, ensure_ascii=False, indent=1) + "\n"


def _steer(src, p, texts) -> Code:
    from .views.steering import options_from

    o = options_from(p)
    o.check()
    vector = (["--token", o.token] if o.vector == "token" else ["--vector", o.saved] if o.vector == "saved" else
              ["--probe-set", o.probe_set] if o.vector == "probe" else
              [x for a, b in zip(o.positive, o.negative) for x in ("--positive", a, "--negative", b)])
    return Code(["from lens.steering.options import SteerOptions", "from lens.steering.results import steer_json"],
                f"result = backend.steer({src}, "
                f"{_new('SteerOptions', positive=o.positive, negative=o.negative, layer=o.layer, coef=o.coef, mode=o.mode, positions=o.positions, unit=o.unit, vector=o.vector, token=o.token, saved=o.saved, probe_set=o.probe_set, max_new_tokens=o.max_new_tokens, temperature=o.temperature, seed=o.seed, target=o.target)})",
                "steer_json(result)",
                ["steer", *vector, "--layer", str(o.layer), "--coef", repr(o.coef), "--mode", o.mode,
                 "--positions", o.positions, "--unit", o.unit, "--max-new-tokens", str(o.max_new_tokens),
                 "--temperature", repr(o.temperature), "--seed", str(o.seed), *_flag("--target", o.target)],
                ["from lens.figures.steering import difference_figure, dose_figure, grid_figure, lens_figure"],
                "figures = [difference_figure(result), grid_figure(result, 'plain'), grid_figure(result, 'steered'), "
                "dose_figure(result), lens_figure(result)]", several=True)


CODE["steer"] = _steer  # steering (lens/steering/)


def _anatomy(src, p, texts) -> Code:
    from .anatomy.options import AnatomyOptions

    o = AnatomyOptions(swap=bool(p["swap"]))
    o.check()
    return Code(["from lens.anatomy.options import AnatomyOptions", "from lens.anatomy.results import anatomy_json"],
                f"result = backend.anatomy({src}, {_new('AnatomyOptions', swap=o.swap)})", "anatomy_json(result)",
                ["anatomy", *(["--swap"] if o.swap else [])],
                ["from lens.figures.anatomy import anatomy_figures"], "figures = anatomy_figures(result)", several=True)


def _contrastive(src, p, texts) -> Code:
    from .anatomy.options import ContrastiveOptions

    if p["amateur_layer"] is None:
        raise LensError("give the amateur layer (a block below the last)")
    o = ContrastiveOptions(amateur_layer=int(p["amateur_layer"]), max_new_tokens=int(p["max_new_tokens"]))
    o.check()
    return Code(["from lens.anatomy.options import ContrastiveOptions",
                 "from lens.anatomy.results import contrastive_json"],
                f"result = backend.contrastive({src}, "
                f"{_new('ContrastiveOptions', amateur_layer=o.amateur_layer, max_new_tokens=o.max_new_tokens)})",
                "contrastive_json(result)",
                ["contrastive", "--amateur-layer", str(o.amateur_layer), "--max-new-tokens", str(o.max_new_tokens)],
                ["from lens.figures.anatomy import contrastive_figure"], "fig = contrastive_figure(result)")


CODE.update({"anatomy": _anatomy, "contrastive": _contrastive})  # layer anatomy (lens/anatomy/)


def _anatomy_suite(src, p, texts) -> Code:
    from .anatomy.options import AnatomyOptions

    o = AnatomyOptions(swap=bool(p["swap"]))
    o.check()
    return Code(["from lens.anatomy.options import AnatomyOptions", "from lens.anatomy.results import anatomy_suite_json",
                 "from lens.suites.suite import parse_jsonl"],
                f"suite = parse_jsonl({src}, {_py(SUITE_FILE)})\n"
                f"result = backend.anatomy_suite(suite, {_new('AnatomyOptions', swap=o.swap)})",
                "anatomy_suite_json(result)", ["anatomy", *(["--swap"] if o.swap else [])],
                ["from lens.figures.anatomy import anatomy_suite_figures"], "figures = anatomy_suite_figures(result)",
                several=True)


CODE["anatomy-suite"] = _anatomy_suite  # layer anatomy over a suite (lens/anatomy/suite.py)


def _probe(src, p, texts) -> Code:
    from .probes.options import ProbeOptions

    o = ProbeOptions(folds=int(p["folds"]), l2=float(p["l2"]))
    o.check()
    return Code(["from lens.probes.data import parse_set", "from lens.probes.options import ProbeOptions",
                 "from lens.probes.results import probe_json"],
                f"result = backend.probe(parse_set({src}, {_py(SUITE_FILE)}), "
                f"{_new('ProbeOptions', folds=o.folds, l2=o.l2)})",
                "probe_json(result)", ["probe", "--folds", str(o.folds), "--l2", repr(o.l2)],
                ["from lens.figures.probes import accuracy_figure"], "fig = accuracy_figure(result)")


CODE["probe"] = _probe  # probes (lens/probes/)
