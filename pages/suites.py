"""Prompt suites page: one finding over many prompts (per layer, with its interval), and patching over pairs."""
import json
from html import escape
from urllib.parse import urlencode

import streamlit as st

from ui.routing import require_app_router

require_app_router()

from lens.figures.lens_comparison import LENS_NAMES, row_labels  # noqa: E402
from lens.figures.patching import SITE_TITLES  # noqa: E402
from lens.figures.suites import MEASURES, exit_figure, pair_grid_figure, suite_lines_figure  # noqa: E402
from lens.suites.aggregate import aggregate  # noqa: E402
from lens.suites.options import PairSuiteOptions, SuiteOptions  # noqa: E402
from lens.suites.suite import (counterfactual_pairs, example, example_names, fillers_from_csv,  # noqa: E402
                               from_template, parse_lines)
from lens.suites.table import csv_text, lens_csv, pairs_csv, prompt_rows, single_prompt_query  # noqa: E402
from ui import present, state  # noqa: E402
from ui.errors import shown_in_page  # noqa: E402
from ui.widgets import (chart, download_json, link_options, link_value_unused, one_of,  # noqa: E402
                        page_header, presenter_table, say_link_values_unused, suite_file)

SOURCES = ("Example", "File", "Paste", "Template")
TABS = ("Over the layers", "Where answers settle", "Each prompt", "Patching over pairs")
STATISTICS = ("mean", "median")
SITES = {"Residual stream": "resid", "Attention": "attn", "MLP": "mlp", "Heads": "head"}
TEMPLATE = "The capital of {country} is"
FILLERS = "country,target,continent\nFrance, Paris,Europe\nJapan, Tokyo,Asia\nItaly, Rome,Europe\n" \
          "Egypt, Cairo,Africa\nSpain, Madrid,Europe\nKenya, Nairobi,Africa\n"
NONE = "(none)"
PRESENTING = present.is_on()
# Presenting: the chart takes what a 720 px screen leaves under the title, the suite's row and the options' row.
CHART = present.SCREEN_CHART - 60 if PRESENTING else 440
ss = st.session_state

def lens_url(result, i: int, measure: str) -> str:
    """The logit lens page's URL for prompt ``i`` of the suite, with this page's model and presenter mode."""
    query = {k: st.query_params[k] for k in ("model", "engine", "present") if k in st.query_params}
    return "/logit_lens?" + urlencode({**query, **single_prompt_query(result, i, measure)})


def open_in_lens(result, i: int, measure: str) -> None:
    """Prompt ``i`` of the suite in the logit lens, in this tab: a new page load of the lens page's URL (the
    sidebar's prompt box is bound to the URL, so a page switch from here could not set it)."""
    url = lens_url(result, i, measure)
    st.markdown(f'<a href="{escape(url)}" target="_self">Open prompt {i} in the logit lens →</a>',
                unsafe_allow_html=True)
    st.html(f"<script>window.location.assign({json.dumps(url)});</script>", unsafe_allow_javascript=True)


page_header("suites")
backend = state.backend()
info = backend.info()
if not info.has_lm_head:
    st.warning(f"{info.name} is an encoder without a language-model head: a suite follows a predicted answer.")
    st.stop()

unused = {"source": link_value_unused("source", one_of(SOURCES)),
          "suite": link_value_unused("suite", one_of(example_names())),
          "tab": link_value_unused("tab", one_of(TABS))}
src_col, what_col = st.columns([1.8, 4], vertical_alignment="bottom")
source = src_col.segmented_control("Suite from", SOURCES, default="Example", key="source", bind="query-params",
                                   help="A shipped example; a file (.jsonl, .csv or .txt); prompts pasted one a "
                                        "line; or a template with slots and a table of fillers.") or "Example"
suite, built = None, None
with shown_in_page("Reading the suite"):
    if source == "Example":
        name = what_col.selectbox("Shipped suite", example_names(), key="suite", bind="query-params")
        suite = example(name)
    elif source == "File":
        suite = suite_file("suite_file", where=what_col,
                           help="JSONL (one object a line) or CSV (a header row) with a `prompt` column and optional "
                                "`target`, `foil`, `position`, `clean`/`corrupt`; other columns are labels. Or .txt, "
                                "one prompt a line.",
                           missing="Upload a suite file: its prompts are read here, never run as code.")
    elif source == "Paste":
        pasted = what_col.text_area("Prompts, one a line", key="pasted", bind="query-params",
                                    height=90 if PRESENTING else 110,
                                    help="A prompt, then a tab and its target (e.g. ` Paris`), optionally a tab "
                                         "and a foil.")
        if not pasted.strip():
            st.info("Paste prompts, one a line, e.g. `The capital of France is<TAB> Paris`.")
            st.stop()
        suite = parse_lines(pasted)
    else:
        t_col, f_col = what_col.columns(2, vertical_alignment="bottom")
        template = t_col.text_input("Template with {slots}", value=TEMPLATE, key="template", bind="query-params")
        as_pairs = t_col.toggle("As clean/corrupted pairs", key="as_pairs", bind="query-params",
                                help="Each filler row against the next: row i the clean prompt (its target the "
                                     "answer), row i+1 the corrupted one (its target the foil). Pairs whose prompts "
                                     "differ in token count are listed and left out, never padded.")
        fillers = fillers_from_csv(f_col.text_area(
            "Fillers (CSV)", value=FILLERS, key="fillers", bind="query-params", height=90 if PRESENTING else 110,
            help="A header row naming the template's slots, then `target` (the answer, e.g. ` Paris`), "
                 "optionally `foil`, and any label columns; then one row per prompt."))
        if as_pairs:
            built = counterfactual_pairs(template, fillers, lambda t: len(backend.tokenize(t)))
            if built.suite is None:
                st.warning("Every pair was left out: " + "; ".join(f"{g['where']}: {g['reason']}"
                                                                    for g in built.left_out[:3]))
                st.stop()
            suite = built.suite
        else:
            suite = from_template(template, fillers)
say_link_values_unused([(unused["source"], "suite source", source),
                        (unused["suite"], "shipped suite", ss.get("suite") or example_names()[0])])
if built is not None and built.left_out:
    st.caption(f"ℹ️ {len(built.left_out)} pairs left out: " + "; ".join(
        f"{g['where']} ({g['reason']})" for g in built.left_out[:4]) + ("; …" if len(built.left_out) > 4 else ""))

if PRESENTING and source != "Example":  # a taller box than the example's: the chart gives up what it adds
    CHART -= 45
has_pairs = bool(suite.pairs)
tabs = st.tabs(list(TABS), key="tab", bind="query-params")
lines_tab, exits_tab, table_tab, pairs_tab = tabs
say_link_values_unused([(unused["tab"], "tab", TABS[0])])
lenses = ["logit", *[k for k in LENS_NAMES if k != "logit" and any(f.kind == k for f in backend.lens_fits())]]


def lens_options(lines: bool):
    """The options of a lens tab, in one row: lens, facet and, for the lines, the measure and the line."""
    c = st.columns([1.4, 2, 1, 1.6] if lines else [1.4, 1.6, 3], vertical_alignment="bottom")
    if not lines:
        c = [c[0], None, None, c[1]]
    measure_labels = {m: MEASURES[m][0] for m in MEASURES}
    # A link may name an option by its key (?measure=target_prob) or, as Streamlit writes it, by its label.
    unused_here = [(link_value_unused("lens", one_of(lenses, [LENS_NAMES[k] for k in lenses])), "lens",
                    LENS_NAMES["logit"]),
                   (link_value_unused("by", one_of([NONE, *suite.columns])), "facet", NONE)]
    link_options("lens", {k: LENS_NAMES[k] for k in lenses})
    lens = c[0].selectbox("Lens", lenses, format_func=LENS_NAMES.get, key="lens", bind="query-params",
                          help="Fit the linear or tuned lens on the Logit lens page to offer it here.")
    measure, statistic = ss.get("measure") or next(iter(MEASURES)), ss.get("statistic") or STATISTICS[0]
    if lines:
        unused_here.append((link_value_unused("measure", one_of(measure_labels, measure_labels.values())), "measure",
                            measure_labels[next(iter(MEASURES))]))
        unused_here.append((link_value_unused("statistic", one_of(STATISTICS)), "line", STATISTICS[0]))
        link_options("measure", measure_labels)
        measure = c[1].selectbox("Measure", list(MEASURES), format_func=lambda m: MEASURES[m][0], key="measure",
                                 bind="query-params")
        statistic = c[2].selectbox("Line", STATISTICS, key="statistic", bind="query-params",
                                   help="The line: the mean or the median over the prompts. The band is always the "
                                        "95 % bootstrap interval of the mean.")
    by = c[3].selectbox("Facet by", [NONE, *suite.columns], key="by", bind="query-params",
                        help="One line per value of a label column of the suite (a continent, a language).")
    say_link_values_unused(unused_here)
    return lens, measure, statistic, None if by in (None, NONE) else by


def run_lens(lens: str):
    bar = st.empty()
    with shown_in_page("The lens over the suite"):
        result = backend.lens_suite(suite, SuiteOptions(lens=lens),
                                    progress=lambda f, m: bar.progress(min(1.0, f), text=f"Suite: {m}"))
    bar.empty()
    return result


open_tab = next((t for t in (lines_tab, exits_tab, table_tab) if t.open), None)
if open_tab is not None:
    with open_tab:
        lens, measure, statistic, by = lens_options(lines_tab.open)
    result = run_lens(lens)
    with shown_in_page("Summing up the suite"):
        groups = aggregate(result, by)
        overall = groups if by is None else aggregate(result, None)
    a = overall[0]
    right = (f"final answer right for {a.n_correct} of {a.n_targets} ({a.accuracy:.0%})" if a.n_targets
             else "no targets: each prompt follows the model's own answer")
    summary = f"{a.n} prompts · {right} · {LENS_NAMES[lens]}"
    if measure == "logit_diff" and a.logit_diff_n == 0:
        st.caption("ℹ️ No prompt of this suite names a foil: the logit difference needs one (a `foil` column).")
    export = {"view": "suite", "numbers": [result, *groups], "texts": suite.to_jsonl(), "model": info.name,
              "params": {"suite": suite.name, "lens": lens, "measure": measure, "statistic": statistic, "by": by}}

    if lines_tab.open:
        with lines_tab:
            chart(suite_lines_figure(groups, measure, result, statistic, height=CHART), key="suite-lines",
                  export=export)
            st.caption(f"{summary} · line: the {statistic}; band: 95 % bootstrap interval of the mean; grey: each "
                       "prompt (hover names it)." if not PRESENTING else summary)
    if exits_tab.open:
        with exits_tab:
            chart(exit_figure(groups, height=CHART), key="suite-exits", export=export)
            st.caption(summary if PRESENTING else
                       f"{summary} · a prompt's exit layer: from there on the lens's top-1 is its final answer.")
    if table_tab.open:
        with table_tab:
            f1, f2, f3 = st.columns([3, 1.4, 1.6], vertical_alignment="bottom")
            find = f1.text_input("Filter", key="find", bind="query-params",
                                 placeholder="words in a prompt, target, answer or label")
            wrong = f2.toggle("Wrong answers only", key="wrong", bind="query-params")
            rows_at = row_labels(result.layers)
            at = f3.selectbox("Numbers at", rows_at[::-1], key="at", bind="query-params",
                              help="The lens row whose target probability, rank and KL the table shows.")
            rows = prompt_rows(result, rows_at.index(at), by=by, text=find or "", wrong_only=bool(wrong))
            if PRESENTING:  # large type: the rows that fit, each prompt a link to its lens
                fit = max(3, (CHART - 150) // 40)
                shown = [{k: v for k, v in r.items() if k in ("#", "prompt", "target", "answer", "right")
                          or k.startswith("p(target)")} for r in rows[:fit]]
                presenter_table(shown, [lens_url(result, r["#"], measure) for r in rows[:fit]], "prompt")
                st.caption(f"{len(shown)} of {len(rows)} prompts shown · click a prompt to open it in the logit lens")
                st.stop()
            picked = st.dataframe(rows, hide_index=True, width="stretch", key="prompt-table", on_select="rerun",
                                  selection_mode="single-row", height=min(CHART - 40, 35 * len(rows) + 40),
                                  column_config={"#": st.column_config.NumberColumn(width="small"),
                                                 "right": st.column_config.CheckboxColumn(width="small")})
            st.caption(f"{len(rows)} of {a.n} prompts · pick a row to open it in the logit lens · sort by a "
                       "column's header" + (f" · grouped by {by}" if by else ""))
            chosen = picked.selection.rows if picked is not None else []
            if chosen:
                open_in_lens(result, rows[chosen[0]]["#"], measure)
            if not PRESENTING:
                c1, c2 = st.columns([1, 4])
                c1.download_button("Table (CSV, every layer)", lambda: csv_text(*lens_csv(result)),
                                   file_name=f"{result.suite}-lens.csv", mime="text/csv", on_click="ignore",
                                   key="suite-csv")
                download_json(result, f"{result.suite}-suite", where=c2)

if pairs_tab.open:
    with pairs_tab:
        if not has_pairs:
            st.info("This suite has no clean/corrupted pairs: give items a `clean` and a `corrupt` prompt (and a "
                    "`target`, optionally a `foil`), pick the **indirect-object** example, or make pairs from a "
                    "template (**As clean/corrupted pairs**).")
            st.stop()
        p1, p2 = st.columns([3, 2], vertical_alignment="bottom")
        site_label = p1.segmented_control("Patch", list(SITES), default="Residual stream", key="site",
                                          bind="query-params") or "Residual stream"
        site = SITES[site_label]
        # Patching every pair takes a while (a grid per pair): it starts on a click, or from a link that ran it.
        go = p2.toggle(f"Patch all {len(suite.pairs)} pairs", key="patched", bind="query-params",
                       help="Each pair's grid is computed once and kept in the result cache.")
        if not go:
            st.caption(f"{len(suite.pairs)} pairs: each corrupted prompt is run again with one activation of its "
                       f"clean prompt patched in, for every layer and position ({SITE_TITLES[site]}).")
            st.stop()
        bar = st.empty()
        with shown_in_page("Patching the pairs"):
            patched = backend.patch_suite(suite, PairSuiteOptions(site=site),
                                          progress=lambda f, m: bar.progress(min(1.0, f), text=m))
        bar.empty()
        chart(pair_grid_figure(patched, height=CHART), key="pair-grid",
              export={"view": "pair-suite", "numbers": patched, "texts": suite.to_jsonl(), "model": info.name,
                      "params": {"suite": suite.name, "site": site}})
        gone = f" · {len(patched.left_out)} left out" if patched.left_out else ""
        # Presenting, without the mean's count (the chart's title says it): the line ran under the Leave presenter
        # mode button.
        mean = (f"{len(patched.left_out)} left out. " if patched.left_out else "") if PRESENTING else \
            f"Mean over {len(patched.clean)} pairs ({patched.metric_name}){gone}. "
        st.caption(mean + "Each cell: (m(patched) − m(corrupt)) / (m(clean) − m(corrupt)); columns count from the end "
                          "(-1 the last position).")
        if patched.left_out and not PRESENTING:
            with st.expander(f"Pairs left out ({len(patched.left_out)})"):
                st.dataframe(patched.left_out, hide_index=True, width="stretch")
        if not PRESENTING:
            c1, c2 = st.columns([1, 4])
            c1.download_button("Cells (CSV, every pair)", lambda: csv_text(*pairs_csv(patched)),
                               file_name=f"{patched.suite}-{site}-patching.csv", mime="text/csv", on_click="ignore",
                               key="pairs-csv")
            download_json(patched, f"{patched.suite}-{site}-patching", where=c2)
