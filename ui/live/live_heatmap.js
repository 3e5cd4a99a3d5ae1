// The live heatmap: every option's figure arrives once; switching the option (a colour metric, a score, a
// toggle) redraws in the browser, with no server round trip. Two kinds of mount share one channel on the page:
//   "control": the box for the option (a select, or a toggle), where Streamlit's own box was;
//   "heatmap": a chart (one or more per channel). Its state ("metric": the option shown) goes back to Python
//   after a pause (so that the URL, the exports and a copied link follow); a clicked cell comes back as a
//   trigger value ("cell"), where the chart names its rows and columns. An option with no figure here (a
//   choice that removes the chart) goes back to Python at once.
// plotly.js is the installed plotly package's own file, served by this Streamlit server (no network).

const SYNC_MS = 700; // the pause after the last switch before Python hears of it (one quiet rerun, no redraw)

function channel(name) {
  const all = (window.__layerlensLive = window.__layerlensLive || {});
  if (!all[name]) all[name] = { metric: null, pending: false, listeners: new Set(), charts: new Set() };
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

// The figure for one metric: the shared cell texts and hovers put back (lens/figures/logit_lens.py live_figure).
function figureFor(data, metric) {
  const fig = data.figures[metric];
  const trace = Object.assign({}, fig.data[0]);
  for (const [k, v] of Object.entries(data.shared || {})) if (!(k in trace)) trace[k] = v;
  return { data: [trace, ...fig.data.slice(1)], layout: Object.assign({}, fig.layout) };
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
  const toggle = data.control === "toggle"; // options: {off value: label, on value: label}, in that order
  let box = parentElement.querySelector(".ll-live-control");
  if (!box || box.dataset.control !== (toggle ? "toggle" : "select")) {
    if (box) box.remove();
    box = document.createElement("div");
    box.className = "ll-live-control";
    box.dataset.control = toggle ? "toggle" : "select";
    box.innerHTML = toggle
      ? '<label class="ll-toggle"><input type="checkbox" role="switch"><span class="ll-track"></span>' +
        '<span class="ll-toggle-text"></span></label>' + HELP
      : '<div class="ll-label-row"><label class="ll-label"></label>' + HELP + '</div>' +
        '<select class="ll-select"></select>';
    parentElement.appendChild(box);
  }
  box.dataset.channel = data.channel;
  const values = Object.keys(data.options);
  let input;
  if (toggle) {
    input = box.querySelector("input");
    box.querySelector(".ll-toggle-text").textContent = data.label;
    box.querySelector("label").title = data.help || "";
  } else {
    box.querySelector("label").textContent = data.label;
    input = box.querySelector("select");
    input.title = data.help || "";
    input.innerHTML = "";
    for (const [value, text] of Object.entries(data.options)) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = text;
      input.appendChild(o);
    }
  }
  input.setAttribute("aria-label", data.label);
  const help = box.querySelector(".ll-help"); // as Streamlit's boxes: a "?" that shows the help on hover
  help.title = data.help || "";
  help.style.display = data.help ? "" : "none";
  const read = () => (toggle ? values[input.checked ? 1 : 0] : input.value);
  const write = (m) => {
    if (toggle) input.checked = m === values[1];
    else input.value = m;
  };
  if (!ch.pending || ch.metric === null) ch.metric = data.value;
  write(ch.metric);
  const onChange = () => {
    ch.metric = read();
    ch.pending = true;
    for (const f of ch.listeners) f(ch.metric);
  };
  const follow = (m) => { if (read() !== m) write(m); };
  input.addEventListener("change", onChange);
  ch.listeners.add(follow);
  return () => {
    input.removeEventListener("change", onChange);
    ch.listeners.delete(follow);
  };
}

// One Plotly plot per metric ("layer"), in the host. The shown layer is the page's `.js-plotly-plot`; the others
// are drawn ahead, one at a time while the browser is idle, and held out of the page (display: none, without the
// plot class, so the page still has one chart). A switch to a drawn metric swaps the layer shown: Plotly draws
// nothing (its redraw of the 600-odd cell texts was most of a switch's time).
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

function newLayer(host, metric, held) {
  const el = document.createElement("div");
  el.className = "ll-layer";
  el.dataset.metric = metric;
  if (held) el.style.cssText = "position: absolute; left: 0; top: 0; width: 100%; visibility: hidden;";
  host.appendChild(el);
  return el;
}

function mountHeatmap(component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const ch = channel(data.channel);
  let host = parentElement.querySelector(".ll-live-plot");
  if (!host) {
    host = document.createElement("div");
    host.className = "ll-live-plot";
    host.style.position = "relative";
    host.__llLayers = {};
    parentElement.appendChild(host);
  }
  // A switch the server has not heard of yet wins over the metric it sent (it is about to hear of it).
  if (!ch.pending || !(ch.metric in data.figures)) ch.metric = data.metric;
  let timer = null;
  let ahead = null;
  let alive = true;
  if (ch.pending) timer = setTimeout(() => sync(), SYNC_MS);

  const sync = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (ch.pending) {
      ch.pending = false;
      setStateValue("metric", ch.metric);
    }
  };
  const onClick = (el) => el.on("plotly_click", (ev) => {
    const pt = ev && ev.points && ev.points[0];
    const idx = pt && (Array.isArray(pt.pointIndex) ? pt.pointIndex : pt.pointNumber);
    if (!Array.isArray(idx)) return;
    const now = host.__llNow;
    if (!now.data.layers || !now.data.layers.length) return; // this chart's cells open nothing
    now.sync(); // the metric shown goes with the click, so the rerun it starts draws the same chart
    now.setTriggerValue("cell", { layer: now.data.layers[idx[0]], position: now.data.positions[idx[1]] });
  });
  const plot = (Plotly, el, metric) => {
    const fig = figureFor(data, metric);
    Plotly.react(el, fig.data, fig.layout, data.config || {});
    el.__llWidth = host.clientWidth;
    host.dataset.draws = String(Number(host.dataset.draws || 0) + 1); // every Plotly draw, for the tests
    if (!el.__llClick) {
      el.__llClick = true;
      onClick(el);
    }
  };
  const draw = (Plotly, metric) => {
    if (!(metric in data.figures)) return;
    const t0 = performance.now();
    const layers = host.__llLayers;
    let el = layers[metric];
    if (!el) {
      el = layers[metric] = newLayer(host, metric, false);
      plot(Plotly, el, metric);
    }
    showLayer(host, el);
    host.dataset.metric = metric;
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
    const metric = Object.keys(data.figures).find((m) => !host.__llLayers[m]);
    if (metric === undefined) {
      host.dataset.ahead = "done";
      return;
    }
    const el = (host.__llLayers[metric] = newLayer(host, metric, true));
    plot(Plotly, el, metric);
    el.style.cssText = "display: none;";
    el.classList.remove("js-plotly-plot");
    ahead = later(drawAhead);
  };
  const onSwitch = (metric) => {
    if (!alive) return;
    if (!(metric in data.figures)) return sync(); // the server draws this choice (e.g. no chart)
    if (!window.__layerlensPlotlyLib) return;
    draw(window.__layerlensPlotlyLib, metric);
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(sync, SYNC_MS);
  };

  loadPlotly(data.plotly_url).then((Plotly) => {
    if (!alive) return;
    if (host.dataset.signature !== data.signature) {
      // New figures: the layer shown is redrawn in place (Plotly.react changes only what differs); the held
      // ones are dropped and drawn ahead again.
      const layers = host.__llLayers;
      const shown = Object.values(layers).find((el) => el.style.display !== "none");
      for (const [m, el] of Object.entries(layers)) {
        if (el !== shown) {
          Plotly.purge(el);
          el.remove();
        }
        delete layers[m];
      }
      if (shown) {
        layers[ch.metric] = shown;
        shown.dataset.metric = ch.metric;
        plot(Plotly, shown, ch.metric);
      }
      host.dataset.signature = data.signature;
    }
    if (host.dataset.metric !== ch.metric || !host.__llLayers[ch.metric]) draw(Plotly, ch.metric);
    host.__llNow = { data, sync, setTriggerValue };
    hideBoxes(data.channel, data.hide || []);
    host.dataset.ahead = "drawing";
    cancel(ahead);
    ahead = later(drawAhead);
  }).catch((err) => {
    host.textContent = "The live chart could not load (" + err.message + "); the boxes above still work.";
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

export default function (component) {
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
  const cleanup = component.data.kind === "control" ? mountControl(component) : mountHeatmap(component);
  let done = false;
  el.__llCleanup = (gone) => {
    if (!done) cleanup(gone);
    done = true;
  };
  return () => el.__llCleanup(true);
}
