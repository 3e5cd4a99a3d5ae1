"""The walk-throughs of lens/explain/ as steps a page (or the terminal) shows: each step a title and blocks,
markdown with KaTeX equations or an HTML table (a block starting with "<"). Numbers only; no maths here."""
from __future__ import annotations

from html import escape

import numpy as np

from ..model.tokens import visible
from ..explain.results import AttentionExplanation, CellExplanation, NeuronExplanation

Step = tuple[str, list[str]]
ROW_KEYS = 6  # keys of an attention row listed (the largest weights, and the chosen key)


def num(x: float | None, digits: int = 4) -> str:
    """A number as the walk-through prints it (4 significant digits; None: a dash)."""
    return "—" if x is None else f"{float(x):.{digits}g}"


# Characters markdown would read as markup inside a token, written as HTML entities.
MARKDOWN_CHARS = {"*": "&#42;", "_": "&#95;", "`": "&#96;", "[": "&#91;", "]": "&#93;", "\\": "&#92;", "$": "&#36;",
                  "~": "&#126;", "#": "&#35;"}


def tok(t: str) -> str:
    """A token as a page shows it: its spaces and control characters visible, escaped for HTML and for markdown,
    in a code chip."""
    return "<code>" + "".join(MARKDOWN_CHARS.get(c, c) for c in escape(visible(t), quote=False)) + "</code>"


CELL = "padding:0.1rem 0.55rem; border-bottom:1px solid #e3e3e3; text-align:right; white-space:nowrap"


def table(head: list[str], rows: list[list[str]], struck: list[bool] | None = None,
          marked: list[bool] | None = None, across: bool = False) -> str:
    """A compact HTML table; ``struck`` rows are drawn struck through and grey, ``marked`` ones bold on yellow.
    ``across``: turned on its side (one column per row given, the heads down the left): a vector's few largest
    dimensions take a few lines instead of one line each."""
    if across:
        def style(j: int) -> str:  # row j given is column j + 1 drawn
            if struck and struck[j]:
                return CELL + "; color:#777; text-decoration: line-through"
            return CELL + ("; font-weight:700; background:#fff3d6" if marked and marked[j] else "")
        body = "".join(f'<tr><td style="{CELL}"><b>{h}</b></td>'
                       + "".join(f'<td style="{style(j)}">{r[i]}</td>' for j, r in enumerate(rows)) + "</tr>"
                       for i, h in enumerate(head))
        return f'<table class="explain-table" style="border-collapse:collapse; margin-bottom:0.4rem">{body}</table>'
    out = ['<table class="explain-table" style="border-collapse:collapse; margin-bottom:0.4rem"><tr>'
           + "".join(f'<th style="{CELL}">{h}</th>' for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        style = ""
        if struck and struck[i]:
            style = ' style="color:#777; text-decoration: line-through"'
        elif marked and marked[i]:
            style = ' style="font-weight:700; background:#fff3d6"'
        out.append(f"<tr{style}>" + "".join(f'<td style="{CELL}">{c}</td>' for c in r) + "</tr>")
    return "".join(out) + "</table>"


def cell_steps(r: CellExplanation) -> list[Step]:
    row = "the embeddings" if r.layer == 0 else f"the output of block {r.layer}"
    where = f"layer {r.layer_label}, position {r.position} ({tok(r.token)})"
    s1 = [f"The cell at {where} reads the residual stream there: {row}, the engine's site `{r.site}`, a vector "
          f"<i>h</i> of {r.d_model} numbers.",
          f"‖<i>h</i>‖ = {num(r.norm)}. Its {len(r.dims)} largest dimensions:",
          table(["dimension", "h"], [[str(d), num(v)] for d, v in zip(r.dims, r.values)], across=True)]
    if r.norm_kind == "rms":
        eq = (f"rms = √(mean of <i>h</i>ᵢ² + ε) = √({num(r.var)} + {num(r.eps)}) = <b>{num(r.rms)}</b>, and "
              "<i>x</i>ᵢ = <i>h</i>ᵢ / rms · <i>w</i>ᵢ")
        head = ["dimension", "h", "÷ rms", "× w", "= x"]
        rows = [[str(d), num(h), num(h / r.rms), num(w), num(x)]
                for d, h, w, x in zip(r.dims, r.values, r.weight, r.normed)]
        what = "RMSNorm"
    elif r.norm_kind == "layernorm":
        eq = (f"μ = mean of <i>h</i> = {num(r.mean)}, σ = √(variance of <i>h</i> + ε) = √({num(r.var)} + "
              f"{num(r.eps)}) = <b>{num(r.rms)}</b>, and "
              "<i>x</i>ᵢ = (<i>h</i>ᵢ − μ) / σ · <i>w</i>ᵢ + <i>b</i>ᵢ")
        head = ["dimension", "h", "(h − μ)/σ", "× w", "+ b", "= x"]
        rows = [[str(d), num(h), num((h - r.mean) / r.rms), num(w), num(b), num(x)]
                for d, h, w, b, x in zip(r.dims, r.values, r.weight, r.bias, r.normed)]
        what = "LayerNorm"
    else:
        eq, head, rows, what = "This model has no final norm: <i>x</i> = <i>h</i>.", ["dimension", "x"], [
            [str(d), num(x)] for d, x in zip(r.dims, r.normed)], "no norm"
    s2 = [f"The final norm ({what}) rescales <i>h</i> before the unembedding reads it:", eq,
          table(head, rows, across=True), f"‖<i>x</i>‖ = {num(r.normed_norm)}."]
    has_bias = any(t["unembed_bias"] for t in r.top)
    head = ["token", "x · u (its unembedding row)"] + (["+ bias"] if has_bias else []) + ["= logit"]
    if r.softcap:
        head[-1] = f"= logit (after {num(r.softcap)}·tanh(z/{num(r.softcap)}))"
    if r.is_final:
        head.append("the model's own logit")
    rows = []
    for i, t in enumerate(r.top):
        cells = [tok(t["token"]), num(t["dot"])] + ([num(t["unembed_bias"])] if has_bias else []) + [num(t["logit"])]
        if r.is_final:
            cells.append(num(r.model_top[i]["logit"]))
        rows.append(cells)
    s3 = [f"Each token's logit is the dot product of <i>x</i> with that token's row <i>u</i> of the unembedding "
          f"({r.vocab_size:,} rows, one per token). The {len(r.top)} largest:", table(head, rows)]
    if r.is_final:
        s3.append("This is the last row: its logits are the model's own output (the last column, read from the "
                  "model's `logits`).")
    t0 = r.top[0]
    s4 = [f"The softmax turns logits into probabilities: <i>p</i> = exp(<i>z</i> − lse) with "
          f"lse = log Σ exp(<i>z</i>) = <b>{num(r.logsumexp)}</b> over all {r.vocab_size:,} tokens "
          f"(the largest logit is {num(r.max_logit)}).",
          table(["token", "logit z", "z − lse", "p = e^(z − lse)"],
                [[tok(t["token"]), num(t["logit"]), num(t["logit"] - r.logsumexp), num(t["prob"])] for t in r.top],
                marked=[i == 0 for i in range(len(r.top))]),
          f"The cell's top-1: <i>p</i>({tok(t0['token'])}) = exp({num(t0['logit'])} − {num(r.logsumexp)}) "
          f"= <b>{num(t0['prob'])}</b>, the heatmap's probability.",
          f"Entropy −Σ <i>p</i> log <i>p</i> = <b>{num(r.entropy)}</b> nats; KL to the final row "
          f"Σ <i>p</i>′ log(<i>p</i>′ / <i>p</i>), with <i>p</i>′ the last row's, "
          f"= <b>{num(r.kl_to_final)}</b> nats."]
    return [("1 · Residual vector", s1), ("2 · Final norm", s2), ("3 · Logits", s3), ("4 · Softmax", s4)]


def attention_steps(r: AttentionExplanation) -> list[Step]:
    qt, kt = tok(r.query_token), tok(r.key_token)
    gqa = (f" With grouped-query attention ({r.n_heads} query heads share {r.n_kv_heads} key/value heads) head "
           f"{r.head} reads key/value head {r.kv_head}." if r.n_kv_heads != r.n_heads else "")
    pos = ("Rotary positions: each pair of dimensions (i, i + d/2) turns by position × θᵢ (the query by its own "
           "position, the key by its own): q · k depends on their distance."
           if r.positions == "rotary" else
           "Learned positions: the position was added to the embeddings at the bottom of the model; nothing is "
           "rotated here.")
    head = ["dimension", "q", "k", "q·k term"]
    rows = [[str(d), num(q), num(k), num(q * k)] for d, q, k in zip(r.dims, r.q, r.k)]
    if r.positions == "rotary":
        head += ["query angle (rad)", "key angle (rad)"]
        for row, aq, ak in zip(rows, r.rotary_query_angles, r.rotary_angles):
            row += [num(aq), num(ak)]
    s1 = [f"Block {r.layer}, head {r.head}: query position {r.query} ({qt}) looking at key position {r.key} ({kt}). "
          f"The query and key vectors ({r.head_dim} numbers each) come from the block's normed input through its "
          f"query and key projections.{gqa}", pos,
          f"‖<i>q</i>‖ = {num(r.q_norm)}, ‖<i>k</i>‖ = {num(r.k_norm)}. The largest terms of "
          "their dot product:", table(head, rows, across=True)]
    s2 = [f"<i>q</i> · <i>k</i> = {num(r.dot)}, scaled: {num(r.dot)} × {num(r.scale)} = <b>{num(r.score)}</b>"
          + (f" (the scale is 1/√{r.head_dim})." if abs(r.scale * r.head_dim ** 0.5 - 1) < 1e-6 else "."),
          ("The causal mask: the key comes after the query, so the query cannot read it: its score is set to −∞ "
           "and its weight is 0." if r.masked else
           f"The causal mask lets query {r.query} read keys 0…{r.query}; later keys get −∞ (weight 0).")]
    # The row's largest weights and the chosen key, in key order (a long prompt's row would not fit a screen); the
    # keys after the query, masked, in one row of their own.
    W = np.asarray(r.row_weights)
    keys = sorted(set(np.argsort(-W, kind="stable")[:ROW_KEYS].tolist()) | {r.key})
    masked = [j for j, sc in enumerate(r.row_scores) if sc is None]
    rows, struck, marked = [], [], []
    for j in keys:
        if j in masked:
            continue
        if rows and j > keys[keys.index(j) - 1] + 1:
            rows.append(["…", "", "", ""])
            struck.append(False)
            marked.append(False)
        rows.append([str(j), tok(r.tokens[j]), num(r.row_scores[j]), num(W[j])])
        struck.append(False)
        marked.append(j == r.key)
    if masked:
        span = f"{masked[0]}" if len(masked) == 1 else f"{masked[0]}…{masked[-1]}"
        rows.append([span, "after the query", "−∞ (masked)", "0"])
        struck.append(True)
        marked.append(r.key in masked)
    left = sum(1 for j, sc in enumerate(r.row_scores) if sc is not None and j not in keys)
    s3 = [f"The softmax over the query's row: <i>w</i> = exp(<i>s</i> − lse) with "
          f"lse = log Σ exp(<i>s</i>) = {num(r.row_logsumexp)} over the keys it may read"
          + (f" (the {ROW_KEYS} largest weights and the chosen key shown; {left} more keys share "
             f"{num(float(W.sum() - W[keys].sum()))})." if left else "."),
          table(["key", "token", "score s", "weight w"], rows, struck=struck, marked=marked, across=True),
          f"The weight of key {r.key}: <b>{num(r.weight)}</b>; the heads view (the model's own attention pattern) "
          f"shows {num(r.shown_weight)}."]
    steps = [("1 · Query and key", s1), ("2 · Score and mask", s2), ("3 · Softmax", s3)]
    if r.output_dims:
        s4 = [f"The head's output at position {r.query} is the weighted sum of every key's value vector, "
              f"<i>o</i> = Σ <i>w</i> · <i>v</i> (‖<i>o</i>‖ = {num(r.output_norm)}).",
              f"Key {r.key}'s part, its weight times its value vector, at the largest dimensions:",
              table(["dimension", "v", "w · v"], [[str(d), num(v), num(x)] for d, v, x in
                                                 zip(r.value_dims, r.value, r.weighted_value)], across=True),
              "The sum over every key, beside the model's own head output:",
              table(["dimension", "Σ w v", "the model's head output"],
                    [[str(d), num(o), num(s)] for d, o, s in zip(r.output_dims, r.output, r.shown_output)],
                    across=True)]
        steps.append(("4 · Output", s4))
    return steps


def neuron_steps(r: NeuronExplanation) -> list[Step]:
    t = tok(r.token)
    what = "gate" if r.gated else "pre-activation"
    s1 = [f"Neuron {r.neuron} of block {r.layer}'s MLP ({r.n_neurons:,} neurons) at position {r.position} ({t}). "
          f"The MLP reads the residual stream after attention (‖<i>h</i>‖ = {num(r.input_norm)}) through "
          f"its norm ({'RMSNorm' if r.norm_kind == 'rms' else 'LayerNorm'}, divided by {num(r.rms)}): "
          f"‖<i>x</i>‖ = {num(r.normed_norm)}.",
          f"The {what} is a dot product of <i>x</i> with the neuron's weights; its largest terms:",
          table(["dimension", "x", "weight", "term"], [[str(d), num(x), num(w), num(x * w)] for d, x, w in
                                                        zip(r.dims, r.normed, r.gate_weights)], across=True),
          f"{what} = <i>x</i> · <i>w</i> {'+ <i>b</i> ' if r.gate_bias else ''}= <b>{num(r.gate)}</b>"]
    if r.gated:
        s2 = [f"Gated MLP: act = {r.activation}(gate) × up = "
              f"{r.activation}({num(r.gate)}) × {num(r.up)} = {num(r.act_of_gate)} × {num(r.up)} = "
              f"<b>{num(r.act)}</b>"]
    else:
        s2 = [f"act = {r.activation}({num(r.gate)}) = <b>{num(r.act)}</b>"]
    s2.append(f"The model's own activation (its `mlp_act.{r.layer}` site): {num(r.shown_act)}.")
    s3 = [f"The neuron writes act × its row of the down projection into the residual stream: "
          f"a vector of norm {num(r.write_norm)}, against {num(r.mlp_out_norm)} for the whole MLP here "
          f"(its projection on the MLP's output is {num(100 * r.share, 3)}% of that output).",
          table(["dimension", "write"], [[str(d), num(w)] for d, w in zip(r.write_dims, r.write)], across=True)]
    if r.promotes:
        s3.append("Read through the unembedding (final norm's scale folded in), it raises most: "
                  + " ".join(f"{tok(p['token'])} ({num(p['logit'], 3)})" for p in r.promotes[:6]))
    return [("1 · Input and " + what, s1), ("2 · Activation", s2), ("3 · Write", s3)]


def as_text(steps: list[Step]) -> str:
    """The steps for a terminal: HTML tables as aligned rows, markup left out."""
    import html
    import re

    lines = []
    for title, blocks in steps:
        lines.append(f"== {title}")
        for b in blocks:
            if b.startswith("<table"):
                rows = re.findall(r"<tr[^>]*>(.*?)</tr>", b)
                cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r)]
                         for r in rows]
                widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(cells[0]))]
                lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
            else:
                lines.append(re.sub(r"<[^>]+>", "", b).replace("`", ""))
    return html.unescape("\n".join(lines))
