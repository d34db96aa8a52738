// The parameters view (/params): a parameter of every run against a metric's last, lowest or
// highest value, one marker a run (which learning rate gave the lowest validation loss), as W&B
// and MLflow plot a sweep. Runs can be coloured by another parameter; either axis can be
// logarithmic. The choices live in the URL.
//
// Live, and cheap: the first request sums the metric up per run (/api/summary); every few
// seconds the page asks only for what was written after that snapshot (after_id) and folds it
// in (lowest of the lowest, latest of the latest).
"use strict";

(() => {
  const { api, el, plotText, formatValue, runLabel, runKey, paramOf, byTrainingFirst, isSystem } = ORM;
  const params = ORM.pageParams();
  const AGGREGATES = [["last", "last value"], ["min", "lowest value"], ["max", "highest value"]];
  const state = {
    runs: [], summary: new Map(), lastId: null, unit: "",
    param: params.get("param") || "", metric: params.get("metric") || "", color: params.get("color") || "",
    agg: AGGREGATES.some(([a]) => a === params.get("agg")) ? params.get("agg") : "last",
    logX: params.get("logx") === "1", logY: params.get("logy") === "1",
  };

  ORM.header("params");
  const chartDiv = document.getElementById("params-chart");
  const controls = document.getElementById("controls");

  const differs = (key) => new Set(state.runs.map((r) => JSON.stringify(paramOf(r, key)))).size > 1;
  const numeric = (key) => state.runs.some((r) => typeof paramOf(r, key) === "number");
  function paramKeys() {
    const keys = [...new Set(state.runs.flatMap((r) => Object.keys(r.params || {})))];
    return keys.sort((a, b) => differs(b) - differs(a) || numeric(b) - numeric(a) || a.localeCompare(b));
  }
  function metricNames() {
    return [...new Set(state.runs.flatMap((r) => r.metrics || []))].sort(byTrainingFirst);
  }
  function defaults() {
    if (!state.param) state.param = paramKeys()[0] || "";
    if (!state.metric) {
      const names = metricNames().filter((m) => !isSystem(m));
      state.metric = ["val.loss", "train.loss"].find((m) => names.includes(m)) || names.find((m) => m.includes("loss")) || names[0] || "";
    }
  }

  function writeUrl() {
    const query = new URLSearchParams();
    for (const [key, value] of [["param", state.param], ["metric", state.metric], ["agg", state.agg], ["color", state.color]]) if (value) query.set(key, value);
    if (state.logX) query.set("logx", "1");
    if (state.logY) query.set("logy", "1");
    if (params.has("refresh")) query.set("refresh", params.get("refresh"));
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  function select(id, value, choices, onchange) {
    return el("select", { id, onchange: (e) => onchange(e.target.value) }, choices.map(([v, text]) => el("option", { value: v, selected: v === value }, text)));
  }
  function checkbox(id, checked, onchange) {
    return el("input", { type: "checkbox", id, checked, onchange: (e) => onchange(e.target.checked) });
  }

  function renderControls() {
    const keys = paramKeys();
    const change = (apply) => (value) => { apply(value); writeUrl(); draw(); };
    controls.replaceChildren(el("div", { class: "controls" },
      el("label", {}, "parameter ", select("param-x", state.param, keys.map((k) => [k, k]), change((v) => { state.param = v; }))),
      el("label", {}, el("span", {}, "against "), select("metric-y", state.metric, metricNames().map((m) => [m, m]), (v) => { state.metric = v; writeUrl(); loadSummary(true).then(draw, fail); })),
      el("label", {}, "as its ", select("aggregate", state.agg, AGGREGATES, change((v) => { state.agg = v; }))),
      el("label", {}, "colour by ", select("color-by", state.color, [["", "–"], ...keys.map((k) => [k, k])], change((v) => { state.color = v; }))),
      el("label", {}, checkbox("log-x", state.logX, change((v) => { state.logX = v; })), " log x"),
      el("label", {}, checkbox("log-y", state.logY, change((v) => { state.logY = v; })), " log y"),
      el("span", { id: "status" })));
  }

  // A summary from the server folded into what is held (an update: points after the snapshot).
  function fold(held, news) {
    if (!held) return news;
    const pick = (f, a, b) => (a === null ? b : b === null ? a : f(a, b));
    const latest = news.last_time_unix_nano >= held.last_time_unix_nano ? news : held;
    return { ...latest, points: held.points + news.points, min: pick(Math.min, held.min, news.min), max: pick(Math.max, held.max, news.max) };
  }

  async function loadSummary(fresh) {
    if (!state.metric) return;
    const metric = state.metric;
    const answer = await api("/api/summary", fresh || state.lastId === null ? { metric } : { metric, after_id: state.lastId });
    if (metric !== state.metric) return; // another metric was chosen meanwhile
    if (fresh || state.lastId === null) state.summary = new Map();
    for (const [run, news] of Object.entries(answer.runs)) state.summary.set(run, fold(fresh ? null : state.summary.get(run), news));
    state.lastId = answer.last_id;
    if (answer.unit) state.unit = answer.unit;
  }

  function draw() {
    if (!window.Plotly) return;
    const theme = ORM.theme();
    const shown = state.runs.filter((r) => paramOf(r, state.param) !== undefined && typeof state.summary.get(runKey(r))?.[state.agg] === "number");
    const numbers = shown.every((r) => typeof paramOf(r, state.param) === "number");
    const colors = state.color ? Colors.assign(shown, state.color) : null;
    const groups = new Map();
    for (const run of shown) {
      const assigned = colors && colors.get(runKey(run));
      const key = assigned ? assigned.label : "runs";
      if (!groups.has(key)) groups.set(key, { assigned, runs: [] });
      groups.get(key).runs.push(run);
    }
    const ordered = [...groups.values()].sort((a, b) => (a.assigned && b.assigned ? Colors.byValue(a.assigned, b.assigned) : 0));
    const traces = ordered.map(({ assigned, runs }) => ({
      type: "scatter", mode: "markers",
      x: runs.map((r) => (numbers ? paramOf(r, state.param) : plotText(formatValue(paramOf(r, state.param)), 60))),
      y: runs.map((r) => state.summary.get(runKey(r))[state.agg]),
      // The run's label, escaped: Plotly reads hover text as HTML.
      text: runs.map((r) => plotText(runLabel(r))),
      customdata: runs.map((r) => runKey(r)),
      hoverinfo: "text+x+y",
      name: assigned ? plotText(assigned.label, 80) : "runs",
      marker: { size: 11, color: assigned ? assigned.color : Colors.PALETTE[0], line: { width: 1, color: theme.bg } },
    }));
    const unit = state.unit && state.unit !== "1" ? ` [${state.unit}]` : "";
    const axis = { gridcolor: theme.grid, linecolor: theme.line, zerolinecolor: theme.line, automargin: true };
    const layout = {
      title: { text: `${plotText(state.metric)} (${state.agg === "last" ? "last value" : state.agg}) against ${plotText(state.param)}`, font: { size: 14 }, x: 0.02 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: theme.fg },
      modebar: { bgcolor: "rgba(0,0,0,0)", color: theme.muted, activecolor: theme.fg },
      xaxis: { ...axis, title: { text: plotText(state.param) }, type: !numbers ? "category" : state.logX ? "log" : "linear" },
      yaxis: { ...axis, title: { text: plotText(state.metric + unit) }, type: state.logY ? "log" : "linear", exponentformat: "e" },
      showlegend: Boolean(colors), legend: { orientation: "h", yref: "container", y: 0, yanchor: "bottom", x: 0 },
      hoverlabel: { namelength: -1, bgcolor: theme.bg, font: { color: theme.fg } },
      margin: { l: 60, r: 20, t: 50, b: 50 }, height: 520, uirevision: `${state.param}:${state.metric}:${state.logX}:${state.logY}`,
    };
    chartDiv.dataset.points = String(shown.length);
    Plotly.react(chartDiv, traces, layout, { responsive: true, displaylogo: false }).then(() => ORM.mark("paramsChartMs"));
    const left = state.runs.length - shown.length;
    document.getElementById("left-out").textContent = left
      ? `${left} of ${state.runs.length} runs are not shown: they have no ${state.param || "parameter"} or no ${state.metric || "metric"}.`
      : `${shown.length} runs.`;
    // A click on a run's marker opens its page.
    if (!chartDiv.dataset.clicks) {
      chartDiv.dataset.clicks = "1";
      chartDiv.on("plotly_click", (event) => { const point = event.points && event.points[0]; if (point) location.href = `/run?run=${encodeURIComponent(point.customdata)}`; });
    }
  }

  function fail(error) { ORM.setStatus(String(error.message || error), true); }

  async function load(first) {
    const listing = api("/api/runs");
    if (first) ORM.loadPlotly();
    state.runs = (await listing).runs;
    // New runs may bring new parameters and metrics to choose from.
    const choices = JSON.stringify([paramKeys(), metricNames()]);
    if (first) { defaults(); writeUrl(); }
    if (first || choices !== state.choices) renderControls();
    state.choices = choices;
    await loadSummary(first);
    await ORM.loadPlotly();
    draw();
    ORM.setStatus(`live · updated ${new Date().toLocaleTimeString()}`);
  }

  ORM.onThemeChange(draw);
  const interval = ORM.refreshMs() * 5;
  const tick = () => {
    const next = () => { if (interval) setTimeout(tick, interval); };
    if (document.hidden) return next();
    load(false).then(next, (error) => { fail(error); next(); });
  };
  load(true).then(() => { if (interval) setTimeout(tick, interval); }, fail);
})();
