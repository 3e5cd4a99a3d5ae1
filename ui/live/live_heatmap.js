// The live heatmap: every option's figure arrives once; switching the option (a colour metric, a score, a
// toggle) redraws in the browser, with no server round trip. Two kinds of mount share one channel on the page:
//   "control": the box for an option (a select, a toggle or a number), where Streamlit's own box was;
//   "heatmap": a chart (one or more per channel). Its state (the options shown: "metric", the figure, and where
//   the payload has them, "stride" and "exits", the rows drawn and the exit marks) goes back to Python after a
//   pause (so that the URL, the exports and a copied link follow); a clicked cell comes back as a trigger value
//   ("cell"), where the chart names its rows and columns. An option the chart cannot draw here (a choice that
//   removes the chart) goes back to Python at once.
// plotly.js is the installed plotly package's own file, served by this Streamlit server (no network).

const SYNC_MS = 700; // the pause after the last switch before Python hears of it (one quiet rerun, no redraw)

function channel(name) {
  const all = (window.__layerlensLive = window.__layerlensLive || {});
  // values: each option's value shown ("metric" and the others); pending: the options switched here that the
  // server has not heard of yet.
  if (!all[name]) all[name] = { values: {}, pending: new Set(), listeners: new Set(), charts: new Set() };
  return all[name];
}

// The installed plotly package's plotly.js (the version its figures are written for), kept to this component:
// any global Plotly already there (Streamlit's own charts bring theirs) is put back after it loads.
function loadPlotly(url) {
  if (window.__layerlensPlotlyLib) return Promise.resolve(window.__layerlensPlotlyLib);
  if (!window.__layerlensPlotly) {
    window.__layerlensPlotly = new Promise((resolve, reject) => {
      const before = Object.prototype.hasOwnProperty.call(window, "Plotly") ? window.Plotly : undefined;
      const s = document.createElement("script");
      s.src = url;
      s.async = true;
      s.onload = () => {
        const lib = window.Plotly;
        if (before === undefined) delete window.Plotly;
        else window.Plotly = before;
        if (!lib || lib === before || !lib.react) return reject(new Error("plotly.js did not load"));
        window.__layerlensPlotlyLib = lib;
        resolve(lib);
      };
      s.onerror = () => {
        window.__layerlensPlotly = null;
        reject(new Error("could not load " + url));
      };
      document.head.appendChild(s);
    });
  }
  return window.__layerlensPlotly;
}

// A per-row array's rows `rows`: a list, or a numpy array as plotly.py writes it ({dtype, bdata, shape}).
const TYPED = { f8: Float64Array, f4: Float32Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
                u2: Uint16Array, i4: Int32Array, u4: Uint32Array };

function rowsOf(v, rows) {
  if (Array.isArray(v)) return rows.map((r) => v[r]);
  if (v && v.bdata !== undefined && TYPED[v.dtype]) {
    const raw = atob(v.bdata);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    const a = new TYPED[v.dtype](bytes.buffer);
    const n = v.shape ? Number(String(v.shape).split(",")[1] || 1) : 1;
    return rows.map((r) => Array.from(a.subarray(r * n, (r + 1) * n)));
  }
  return v;
}

// The rows a chart draws now: those of the stride shown, where the payload switches strides (else all of them).
function rowsShown(data, values) {
  if (!data.strides) return null;
  return (data.strides[values.stride] || data.strides["1"]).rows;
}

// The figure for one metric (lens/figures/logit_lens.py live_figure does the same): the shared cell texts and
// hovers put back; where the payload switches strides, the stride's rows of each per-row array and its height,
// and the exit marks under those rows.
function figureFor(data, metric, values) {
  // Another target than the default: its figures of the target metrics, its part of every cell's hover.
  const other = values.target && own(data.targets, values.target) ? data.targets[values.target] : null;
  const fig = (other && other.figures[metric]) || data.figures[metric];
  const trace = Object.assign({}, fig.data[0]);
  for (const [k, v] of Object.entries(data.shared || {})) if (!(k in trace)) trace[k] = v;
  if (other && Array.isArray(trace.customdata)) {
    const at = data.target_at; // a cell's [rank, probability, target] start there
    trace.customdata = trace.customdata.map((row, i) => row.map((cell, j) =>
      [...cell.slice(0, at), ...other.cells[i][j], other.token[j], ...cell.slice(at + 3)]));
  }
  const layout = Object.assign({}, fig.layout);
  const rows = rowsShown(data, values);
  if (rows) {
    for (const k of ["z", "text", "customdata", "y"]) if (k in trace) trace[k] = rowsOf(trace[k], rows);
    layout.height = (data.strides[values.stride] || data.strides["1"]).height;
    if (values.exits === "on" && data.exits) {
      const shapes = [];
      data.exits.rows.forEach((e, i) => {
        if (!e) return; // never saturated, or from the embeddings on: nothing below to mark
        const shown = rows.findIndex((r) => r >= e);
        if (shown < 0) return;
        shapes.push({ type: "line", xref: "x", yref: "y", x0: i - 0.5, x1: i + 0.5, y0: shown - 0.5,
                      y1: shown - 0.5, line: { color: "#e4572e", width: 4 } });
      });
      layout.shapes = shapes;
      layout.title = Object.assign({}, layout.title, { text: (layout.title && layout.title.text || "") +
                                                              data.exits.title });
    }
  }
  return { data: [trace, ...fig.data.slice(1)], layout };
}

// Whether `obj` has `key` of its own (a typed text such as "constructor" is no option: `in` would say it is).
const own = (obj, key) => obj != null && Object.prototype.hasOwnProperty.call(obj, key);

// The value of option `name` that a chart with `data` can draw (else null): a metric with a figure, a stride the
// payload has rows for, the exit marks on or off, a target it has (or "", the default).
function drawable(data, name, value) {
  if (name === "metric") return own(data.figures, value) ? value : null;
  if (name === "stride") return own(data.strides, value) ? value : null;
  if (name === "exits") return data.exits && (value === "on" || value === "off") ? value : null;
  if (name === "target") return data.targets && (value === "" || own(data.targets, value)) ? value : null;
  return null;
}

// Streamlit's own boxes for what this channel's chart now controls, hidden while a live chart of the channel is
// drawn (until then, or if plotly.js cannot load, they work as before, with a round trip); the live box shown.
function hideBoxes(name, keys) {
  const id = "layerlens-live-hide-" + name;
  let style = document.getElementById(id);
  if (!style) {
    style = document.createElement("style");
    style.id = id;
    document.head.appendChild(style);
  }
  style.textContent = keys.map((k) => `.st-key-${k} { display: none !important; }`).join("\n") +
    `\n.ll-live-control[data-channel="${name}"] { display: block !important; }`;
}

function showBoxes(name) {
  const style = document.getElementById("layerlens-live-hide-" + name);
  if (style) style.remove();
}

// The help mark of Streamlit's boxes (a question mark in a circle), drawn, so that it holds no text of its own.
const HELP = '<span class="ll-help" role="img" aria-label="Help"><svg viewBox="0 0 24 24" width="16" height="16" ' +
  'aria-hidden="true"><path fill="currentColor" d="M11 18h2v-2h-2v2zm1-16C6.48 2 2 6.48 2 12s4.48 10 10 10 ' +
  '10-4.48 10-10S17.52 2 12 2zm0 18c-4.41 0-8-3.59-8-8s3.59-8 8-8 8 3.59 8 8-3.59 8-8 8zm0-14c-2.21 0-4 1.79-4 ' +
  '4h2c0-1.1.9-2 2-2s2 .9 2 2c0 2-3 1.75-3 5h2c0-2.25 3-2.5 3-5 0-2.21-1.79-4-4-4z"/></svg></span>';

function mountControl(component) {
  const { data, parentElement } = component;
  const ch = channel(data.channel);
  const option = data.option || "metric"; // the option this box sets
  // select: options {value: label}; toggle: options {off value: label, on value: label}, in that order;
  // number: whole numbers from data.min to data.max; text: any text, with options {value: label} offered in
  // its list (one picked from it applies at once; typed text when it is committed, with Enter).
  const kind = data.control || "select";
  let box = parentElement.querySelector(".ll-live-control");
  if (!box || box.dataset.control !== kind) {
    if (box) box.remove();
    box = document.createElement("div");
    box.className = "ll-live-control";
    box.dataset.control = kind;
    box.innerHTML = kind === "toggle"
      ? '<label class="ll-toggle"><input type="checkbox" role="switch"><span class="ll-track"></span>' +
        '<span class="ll-toggle-text"></span></label>' + HELP
      : '<div class="ll-label-row"><label class="ll-label"></label>' + HELP + '</div>' +
        (kind === "number" ? '<input class="ll-select ll-number" type="number" step="1">'
         : kind === "text" ? '<input class="ll-select ll-text" type="text" autocomplete="off"><datalist></datalist>'
                           : '<select class="ll-select"></select>');
    parentElement.appendChild(box);
  }
  box.dataset.channel = data.channel;
  box.dataset.option = option;
  const values = Object.keys(data.options || {});
  let input;
  if (kind === "toggle") {
    input = box.querySelector("input");
    box.querySelector(".ll-toggle-text").textContent = data.label;
    box.querySelector("label").title = data.help || "";
  } else {
    const label = box.querySelector("label");
    label.textContent = data.label;
    input = box.querySelector(kind === "number" || kind === "text" ? "input" : "select");
    input.id = input.id || "ll-" + data.channel + "-" + option;
    label.htmlFor = input.id;
    input.title = data.help || "";
    if (kind === "number") {
      input.min = String(data.min);
      input.max = String(data.max);
    } else if (kind === "text") {
      const list = box.querySelector("datalist");
      list.id = input.id + "-list";
      input.setAttribute("list", list.id);
      input.placeholder = data.placeholder || "";
      list.innerHTML = "";
      for (const [value, text] of Object.entries(data.options || {})) {
        const o = document.createElement("option");
        o.value = value;
        o.label = text;
        list.appendChild(o);
      }
    } else {
      input.innerHTML = "";
      for (const [value, text] of Object.entries(data.options)) {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = text;
        input.appendChild(o);
      }
    }
  }
  input.setAttribute("aria-label", data.label);
  const help = box.querySelector(".ll-help"); // as Streamlit's boxes: a "?" that shows the help on hover
  help.title = data.help || "";
  help.style.display = data.help ? "" : "none";
  // A number box's value: a whole number in its range, else null (a box being typed into: nothing to draw yet).
  const whole = (v) => {
    const t = String(v).trim();
    if (!/^[0-9]+$/.test(t)) return null;
    const n = Number(t);
    return n >= data.min && n <= data.max ? String(n) : null;
  };
  const read = () => (kind === "toggle" ? values[input.checked ? 1 : 0]
                      : kind === "number" ? whole(input.value) : input.value);
  const write = (m) => {
    if (kind === "toggle") input.checked = m === values[1];
    else input.value = m;
  };
  if (!ch.pending.has(option) || ch.values[option] == null) ch.values[option] = String(data.value);
  // (Not into a text box being typed into: a rerun that arrives meanwhile would overwrite what is being typed.)
  if (kind !== "text" || document.activeElement !== input) write(ch.values[option]);
  const onChange = () => {
    const m = read();
    if (m === null || m === ch.values[option]) return;
    ch.values[option] = m;
    ch.pending.add(option);
    for (const f of ch.listeners) f(option, m);
  };
  const onCommit = () => { if (read() === null) write(ch.values[option]); }; // left with no whole number in range
  const follow = (name, m) => { if (name === option && read() !== m) write(m); };
  const event = kind === "number" ? "input" : "change"; // a number applies as it is typed or stepped
  // A text applies as typed where it is one the list offers (a pick from the list is such an input).
  // A text box applies what is picked from its list at once (typed text on Enter: typing on past an offered
  // token, " to" on the way to " top", does not switch to it).
  const onOffered = (e) => { if (e.inputType === "insertReplacementText" && own(data.options, input.value)) onChange(); };
  input.addEventListener(event, onChange);
  if (kind === "number") input.addEventListener("change", onCommit);
  if (kind === "text") input.addEventListener("input", onOffered);
  ch.listeners.add(follow);
  return () => {
    input.removeEventListener(event, onChange);
    input.removeEventListener("change", onCommit);
    input.removeEventListener("input", onOffered);
    ch.listeners.delete(follow);
  };
}

// One Plotly plot per metric ("layer"), in the host, for the other options shown now (the stride, the exit
// marks). The shown layer is the page's `.js-plotly-plot`; the other metrics' are drawn ahead, one at a time while
// the browser is idle, and held out of the page (display: none, without the plot class, so the page still has one
// chart). A switch to a drawn metric swaps the layer shown: Plotly draws nothing (its redraw of the 600-odd cell
// texts was most of a switch's time). Another stride or exit choice draws anew, and drops the layers drawn before.
function showLayer(host, el) {
  for (const other of host.children) {
    if (other !== el && other.classList.contains("ll-layer")) {
      other.style.display = "none";
      other.classList.remove("js-plotly-plot");
    }
  }
  el.classList.add("js-plotly-plot");
  el.style.display = "";
  if (el.__llWidth !== host.clientWidth && window.__layerlensPlotlyLib) { // resized while it was held
    el.__llWidth = host.clientWidth;
    window.__layerlensPlotlyLib.Plots.resize(el);
  }
}

// How many payloads a chart keeps a layer of (the one shown, and the last ones before it: of each, the layer that
// was shown when it was left), and so how many prompts or views back a return needs no redraw.
const HISTORY = 4;

// ``signature`` is the payload now shown: first in the chart's history. The layer shown until now stays, hidden;
// the other layers of the payloads before go, or are kept as the spare that the next new layer is drawn into
// (Plotly.react on a drawn heatmap changes only what differs: faster than a first draw).
function remember(Plotly, host, signature) {
  host.__llSignatures = [signature, ...(host.__llSignatures || []).filter((s) => s !== signature)].slice(0, HISTORY);
  const kept = new Set(host.__llSignatures);
  const shown = Object.values(host.__llLayers).find((el) => el.style.display !== "none");
  if (shown) shown.dataset.kept = "yes";
  for (const [key, el] of Object.entries(host.__llLayers)) {
    const sig = JSON.parse(key)[0];
    if (sig === signature) { // shown again: its layers are this payload's, as drawn ahead
      delete el.dataset.kept;
      continue;
    }
    if (kept.has(sig) && el.dataset.kept === "yes") continue;
    delete host.__llLayers[key];
    if (!host.__llSpare) {
      host.__llSpare = el;
      continue;
    }
    Plotly.purge(el);
    el.remove();
  }
}

// A layer for ``key`` to draw into, shown: the spare when there is one (see ``remember``), else a new one.
function layerFor(host, key) {
  const el = host.__llSpare || newLayer(host, key, false);
  host.__llSpare = null;
  el.style.cssText = ""; // drawn where it is seen (a hidden plot is drawn at no width, then again)
  el.dataset.view = key;
  delete el.dataset.kept;
  return el;
}

function newLayer(host, key, held) {
  const el = document.createElement("div");
  el.className = "ll-layer";
  el.dataset.view = key;
  if (held) el.style.cssText = "position: absolute; left: 0; top: 0; width: 100%; visibility: hidden;";
  host.appendChild(el);
  return el;
}

// The options besides the metric that a payload may switch in the browser.
const OPTIONS = ["stride", "exits", "target"];

function mountHeatmap(component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const ch = channel(data.channel);
  let host = parentElement.querySelector(".ll-live-plot");
  if (!host) {
    host = document.createElement("div");
    host.className = "ll-live-plot";
    host.style.position = "relative";
    host.__llLayers = {};
    host.dataset.drawn = "no"; // "yes" once a chart is drawn, "failed" if plotly.js cannot load (tests wait on it)
    parentElement.appendChild(host);
  }
  // A switch the server has not heard of yet wins over the value it sent (it is about to hear of it).
  const sent = Object.assign({ metric: data.metric }, data.options || {});
  for (const [name, value] of Object.entries(sent)) {
    if (!ch.pending.has(name) || drawable(data, name, ch.values[name]) === null) {
      ch.values[name] = value == null ? value : String(value);
    }
  }
  const opts = OPTIONS.filter((o) => o in sent);
  // A layer's key: its payload's signature, its metric and options (a target, typed, may hold any character:
  // JSON, not a separator).
  const keyOf = (metric, target) => JSON.stringify([data.signature, metric,
                                                    ...opts.map((o) => (o === "target" ? target : ch.values[o]))]);
  const viewOf = (metric) => keyOf(metric, ch.values.target);
  // What is drawn ahead while the browser is idle: the other metrics, for the options shown; and where the metric
  // shown follows the target, the other targets the payload has, for that metric (a target switch then draws
  // nothing). Only what the payload can draw.
  const aheadViews = () => {
    const out = Object.keys(data.figures).map((m) => [m, ch.values.target]);
    if (data.targets && (data.target_metrics || []).includes(ch.values.metric)) {
      for (const t of ["", ...Object.keys(data.targets)]) out.push([ch.values.metric, t]);
    }
    return out;
  };
  const canDraw = () => opts.every((o) => drawable(data, o, ch.values[o]) !== null);
  let timer = null;
  let ahead = null;
  let alive = true;
  if (ch.pending.size) timer = setTimeout(() => sync(), SYNC_MS);

  const sync = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    for (const name of [...ch.pending]) {
      if (!(name in sent)) continue; // another chart's option
      ch.pending.delete(name);
      setStateValue(name, ch.values[name]);
    }
  };
  const onClick = (el) => el.on("plotly_click", (ev) => {
    const pt = ev && ev.points && ev.points[0];
    const idx = pt && (Array.isArray(pt.pointIndex) ? pt.pointIndex : pt.pointNumber);
    if (!Array.isArray(idx)) return;
    const now = host.__llNow;
    if (!now.data.layers || !now.data.layers.length) return; // this chart's cells open nothing
    const row = el.__llRows ? el.__llRows[idx[0]] : idx[0]; // the row of every layer that this drawn row is
    now.sync(); // the options shown go with the click, so the rerun it starts draws the same chart
    now.setTriggerValue("cell", { layer: now.data.layers[row], position: now.data.positions[idx[1]] });
  });
  const plot = (Plotly, el, metric, target) => {
    const fig = figureFor(data, metric, target === undefined ? ch.values : { ...ch.values, target });
    Plotly.react(el, fig.data, fig.layout, data.config || {});
    el.__llRows = rowsShown(data, ch.values);
    el.__llWidth = host.clientWidth;
    host.dataset.draws = String(Number(host.dataset.draws || 0) + 1); // every Plotly draw, for the tests
    el.dataset.draw = host.dataset.draws; // which draw this layer's was (a layer shown again keeps it)
    if (!el.__llClick) {
      el.__llClick = true;
      onClick(el);
    }
  };
  // The layers of this payload drawn for other options than those shown now, or than those drawn ahead for them:
  // gone (all but `keep`). Those of the payloads before it stay (``remember``).
  const dropOthers = (Plotly, keep) => {
    const layers = host.__llLayers;
    const wanted = new Set(aheadViews().map(([m, t]) => keyOf(m, t)));
    for (const [key, el] of Object.entries(layers)) {
      if (el !== keep && !wanted.has(key) && JSON.parse(key)[0] === data.signature) {
        Plotly.purge(el);
        el.remove();
        delete layers[key];
      }
    }
  };
  const draw = (Plotly) => {
    const metric = ch.values.metric;
    if (!own(data.figures, metric) || !canDraw()) return;
    const t0 = performance.now();
    const layers = host.__llLayers;
    const key = viewOf(metric);
    let el = layers[key];
    if (!el) {
      el = layers[key] = layerFor(host, key);
      plot(Plotly, el, metric);
    }
    showLayer(host, el);
    dropOthers(Plotly, el);
    host.dataset.metric = metric;
    for (const o of opts) host.dataset[o] = ch.values[o];
    host.dataset.drawMs = String(Math.round(performance.now() - t0));
  };
  // The other metrics' layers, one per idle moment (a switch before then draws its layer at once).
  // data-ahead="drawing" on the host until all are drawn (the page is not idle until then).
  const later = (f) => (window.requestIdleCallback ? { idle: requestIdleCallback(f, { timeout: 1000 }) }
                                                     : { timer: setTimeout(f, 30) });
  const cancel = (h) => h && (h.idle !== undefined ? cancelIdleCallback(h.idle) : clearTimeout(h.timer));
  const drawAhead = () => {
    ahead = null;
    const Plotly = window.__layerlensPlotlyLib;
    if (!alive || !Plotly) return;
    const next = canDraw() ? aheadViews().find(([m, t]) => !host.__llLayers[keyOf(m, t)]) : undefined;
    if (next === undefined) {
      host.dataset.ahead = "done";
      return;
    }
    const [metric, target] = next;
    const el = (host.__llLayers[keyOf(metric, target)] = newLayer(host, keyOf(metric, target), true));
    plot(Plotly, el, metric, target);
    el.style.cssText = "display: none;";
    el.classList.remove("js-plotly-plot");
    ahead = later(drawAhead);
  };
  const onSwitch = (name, value) => {
    if (!alive || !(name in sent)) return;
    if (drawable(data, name, value) === null) return sync(); // the server draws this choice (e.g. no chart)
    const Plotly = window.__layerlensPlotlyLib;
    if (!Plotly) return;
    draw(Plotly);
    host.dataset.ahead = "drawing"; // what is drawn ahead for these options (the other metrics, the targets)
    cancel(ahead);
    ahead = later(drawAhead);
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(sync, SYNC_MS);
  };

  loadPlotly(data.plotly_url).then((Plotly) => {
    if (!alive) return;
    if (host.dataset.signature !== data.signature) {
      // New figures: drawn in layers of their own. The last payloads' layers stay, hidden, so that a prompt or
      // view seen again shows at once (its payload has the same signature); older ones go.
      remember(Plotly, host, data.signature);
      host.dataset.signature = data.signature;
    }
    if (!canDraw()) { // nothing to draw these options with: no chart
      for (const el of Object.values(host.__llLayers)) el.style.display = "none";
    }
    draw(Plotly); // the layer for the options shown (drawn unless it already is), the others' dropped
    host.dataset.drawn = "yes";
    host.__llNow = { data, sync, setTriggerValue };
    hideBoxes(data.channel, data.hide || []);
    host.dataset.ahead = "drawing";
    cancel(ahead);
    ahead = later(drawAhead);
  }).catch((err) => {
    host.textContent = "The live chart could not load (" + err.message + "); the boxes above still work.";
    host.dataset.drawn = "failed";
  });

  ch.listeners.add(onSwitch);
  ch.charts.add(host);
  return (gone) => {
    alive = false;
    ch.listeners.delete(onSwitch);
    if (timer !== null) clearTimeout(timer); // a switch still pending is sent by the next mount
    cancel(ahead);
    if (gone) {
      // The chart left the page: with no other chart of its channel left, Streamlit's boxes come back.
      ch.charts.delete(host);
      if (!ch.charts.size) showBoxes(data.channel);
    }
  };
}

// A heatmap's data come as the bytes of their JSON (written once per view on the server: ui/live's ``joined``);
// the boxes' as an object.
function withData(given) {
  const raw = given.data;
  if (!(raw instanceof ArrayBuffer || ArrayBuffer.isView(raw))) return given;
  const component = Object.create(given);
  Object.defineProperty(component, "data", { value: JSON.parse(new TextDecoder().decode(raw)) });
  return component;
}

// Input events that put a whole text in the box at once (InputEvent.inputType).
const WHOLE_TEXT = new Set(["insertFromPaste", "insertFromPasteAsQuotation", "insertFromDrop", "insertReplacementText",
  "insertFromYank"]);

// The sidebar's prompt box, watched as a person types (ui/lookahead.py): each pause's text, or a text pasted, goes to
// the server as the trigger value "typed", which computes it ahead of Ctrl+Enter. Not the text the page shows
// already, nor one run at once (Ctrl+Enter, or leaving the box, which runs it): that run asks for it itself.
function mountLookahead(component) {
  const { data, setTriggerValue } = component;
  const selector = `[data-testid="stSidebar"] textarea[aria-label="${data.label}"]`;
  let timer = null;
  let last = data.value;
  const isBox = (t) => t instanceof HTMLTextAreaElement && t.matches(selector);
  const onInput = (e) => {
    if (!isBox(e.target)) return;
    clearTimeout(timer);
    const text = e.target.value;
    // A whole text at once (pasted, dropped, a suggestion taken) is not typed on: computed at once, while the
    // person reaches for Ctrl+Enter. A key typed waits for a pause.
    timer = setTimeout(() => {
      if (text.trim() && text !== last) {
        last = text;
        setTriggerValue("typed", text);
      }
    }, WHOLE_TEXT.has(e.inputType) ? 0 : data.pause_ms);
  };
  const onRun = (e) => {
    if (!isBox(e.target)) return;
    if (e.type === "focusout" || (e.key === "Enter" && (e.ctrlKey || e.metaKey))) clearTimeout(timer);
  };
  document.addEventListener("input", onInput, true);
  document.addEventListener("keydown", onRun, true);
  document.addEventListener("focusout", onRun, true);
  return () => {
    clearTimeout(timer);
    document.removeEventListener("input", onInput, true);
    document.removeEventListener("keydown", onRun, true);
    document.removeEventListener("focusout", onRun, true);
  };
}

export default function (given) {
  const component = withData(given);
  const el = component.parentElement;
  if (component.data.kind === "prefetch") {
    // Streamlit's chart code, fetched and run ahead (the first chart's lazy import then finds it loaded).
    if (!window.__layerlensPrefetched) {
      const url = new URL(component.data.url, window.location.origin).href; // a full URL: this module is a blob
      window.__layerlensPrefetched = import(url).catch((e) => {
        console.warn("LayerLens: chart code not fetched ahead: " + e);
        return null;
      });
    }
    return () => {};
  }
  // Streamlit calls this again when the data changes, without calling the cleanup it was given (that runs only
  // when the element goes): the previous call's listeners and timers are removed here, once per element.
  if (el.__llCleanup) el.__llCleanup(false);
  const kind = component.data.kind;
  const cleanup = kind === "control" ? mountControl(component)
    : kind === "lookahead" ? mountLookahead(component) : mountHeatmap(component);
  let done = false;
  el.__llCleanup = (gone) => {
    if (!done) cleanup(gone);
    done = true;
  };
  return () => el.__llCleanup(true);
}
