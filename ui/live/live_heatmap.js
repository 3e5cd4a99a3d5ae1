// The live heatmap: every colour metric's figure arrives once; switching the metric redraws in the browser
// (Plotly.react), with no server round trip. Two kinds of mount share one channel on the page:
//   "control": the "Colour by" box (in the controls row, where Streamlit's own box was);
//   "heatmap": the chart. Its state ("metric") goes back to Python after a pause (so that the URL, the exports
//   and a copied link follow), and a clicked cell comes back as a trigger value ("cell").
// plotly.js is the installed plotly package's own file, served by this Streamlit server (no network).

const SYNC_MS = 700; // the pause after the last switch before Python hears of it (one quiet rerun, no redraw)

function channel(name) {
  const all = (window.__layerlensLive = window.__layerlensLive || {});
  if (!all[name]) all[name] = { metric: null, pending: false, listeners: new Set() };
  return all[name];
}

function loadPlotly(url) {
  if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
  if (!window.__layerlensPlotly) {
    window.__layerlensPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = url;
      s.async = true;
      s.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error("plotly.js did not load")));
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

// Streamlit's own boxes for what this component now controls, hidden once the live chart is drawn (until
// then, or if plotly.js cannot load, they work as before, with a round trip).
function hideBoxes(keys) {
  const id = "layerlens-live-hide";
  let style = document.getElementById(id);
  if (!style) {
    style = document.createElement("style");
    style.id = id;
    document.head.appendChild(style);
  }
  style.textContent = keys.map((k) => `.st-key-${k} { display: none !important; }`).join("\n") +
    "\n.ll-live-control { display: block !important; }";
}

function mountControl(component) {
  const { data, parentElement } = component;
  const ch = channel(data.channel);
  let box = parentElement.querySelector(".ll-live-control");
  if (!box) {
    box = document.createElement("div");
    box.className = "ll-live-control";
    box.innerHTML = '<label class="ll-label"></label><select class="ll-select"></select>';
    parentElement.appendChild(box);
  }
  const label = box.querySelector("label");
  const select = box.querySelector("select");
  label.textContent = data.label;
  select.title = data.help || "";
  select.setAttribute("aria-label", data.label);
  select.innerHTML = "";
  for (const [value, text] of Object.entries(data.options)) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }
  if (!ch.pending || ch.metric === null) ch.metric = data.value;
  select.value = ch.metric;
  const onChange = () => {
    ch.metric = select.value;
    ch.pending = true;
    for (const f of ch.listeners) f(select.value);
  };
  const follow = (m) => { if (select.value !== m) select.value = m; };
  select.addEventListener("change", onChange);
  ch.listeners.add(follow);
  return () => {
    select.removeEventListener("change", onChange);
    ch.listeners.delete(follow);
  };
}

function mountHeatmap(component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const ch = channel(data.channel);
  let host = parentElement.querySelector(".ll-live-plot");
  if (!host) {
    host = document.createElement("div");
    host.className = "ll-live-plot";
    parentElement.appendChild(host);
  }
  // A switch the server has not heard of yet wins over the metric it sent (it is about to hear of it).
  if (!ch.pending || !(ch.metric in data.figures)) ch.metric = data.metric;
  let timer = null;
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
  const draw = (Plotly, metric) => {
    if (!(metric in data.figures)) return;
    const fig = figureFor(data, metric);
    const t0 = performance.now();
    Plotly.react(host, fig.data, fig.layout, data.config || {});
    host.dataset.metric = metric;
    host.dataset.drawMs = String(Math.round(performance.now() - t0));
  };
  const onSwitch = (metric) => {
    if (!alive || !window.Plotly) return;
    draw(window.Plotly, metric);
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(sync, SYNC_MS);
  };

  loadPlotly(data.plotly_url).then((Plotly) => {
    if (!alive) return;
    // The same figures and metric already drawn (a rerun that changed nothing here): leave the chart alone.
    if (host.dataset.signature !== data.signature || host.dataset.metric !== ch.metric || !host.data) {
      draw(Plotly, ch.metric);
      host.dataset.signature = data.signature;
    }
    host.__llNow = { data, sync, setTriggerValue };
    if (!host.__llClick) {
      host.__llClick = true;
      host.on("plotly_click", (ev) => {
        const pt = ev && ev.points && ev.points[0];
        const idx = pt && (Array.isArray(pt.pointIndex) ? pt.pointIndex : pt.pointNumber);
        if (!Array.isArray(idx)) return;
        const now = host.__llNow;
        now.sync(); // the metric shown goes with the click, so the rerun it starts draws the same chart
        now.setTriggerValue("cell", { layer: now.data.layers[idx[0]], position: now.data.positions[idx[1]] });
      });
    }
    hideBoxes(data.hide || []);
  }).catch((err) => {
    host.textContent = "The live chart could not load (" + err.message + "); the boxes above still work.";
  });

  ch.listeners.add(onSwitch);
  return () => {
    alive = false;
    ch.listeners.delete(onSwitch);
    if (timer !== null) clearTimeout(timer); // a switch still pending is sent by the next mount
  };
}

export default function (component) {
  // Streamlit calls this again when the data changes, without calling the cleanup it was given (that runs only
  // when the element goes): the previous call's listeners and timers are removed here, once per element.
  const el = component.parentElement;
  if (el.__llCleanup) el.__llCleanup();
  const cleanup = component.data.kind === "control" ? mountControl(component) : mountHeatmap(component);
  let done = false;
  el.__llCleanup = () => {
    if (!done) cleanup();
    done = true;
  };
  return el.__llCleanup;
}
