// The runs page (/): every run of the store with its status, parameters and last values, a
// filter, sorting by any column or by a metric's last value (the lowest loss first), and a
// button to compare the runs ticked. It refreshes every few seconds (the runs summary reads the
// whole store, so less often than the charts do).
"use strict";

(() => {
  const { api, el, formatNumber, formatTime, formatDuration, formatRanks, formatValue, runDuration, runLabel, runKey, statusBadge, isSystem, byTrainingFirst } = ORM;
  const LAST_VALUES_SHOWN = 6;
  const byMetric = ORM.pageParams().get("by") || "";
  const state = { runs: [], chosen: new Set(), metric: byMetric, sort: byMetric ? { key: "metric", descending: false } : { key: "start", descending: true } };

  ORM.header("runs");
  const filterBox = document.getElementById("filter");
  const metricBox = document.getElementById("sort-metric");
  const tbody = document.querySelector("#runs tbody");
  filterBox.value = ORM.pageParams().get("q") || "";

  // Filter terms, all of which must match: "key=value" (also != < <= > >=) on a parameter,
  // status, name, tag or run; anything else is looked for in the row's text.
  function matches(run, text, terms) {
    return terms.every((term) => {
      const m = term.match(/^([^=<>!]+)(=|!=|<=|>=|<|>)(.*)$/);
      if (!m) return text.includes(term);
      const [, key, op, wanted] = m;
      const fields = { status: run.status, name: run.name, run: runKey(run), tag: (run.tags || []).join(","), ...(run.params || {}) };
      const lower = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k.toLowerCase(), v]));
      if (!(key in lower)) return false;
      const value = lower[key];
      if (op === "=" || op === "!=") {
        const equal = key === "tag" ? (run.tags || []).map((t) => String(t).toLowerCase()).includes(wanted) : String(formatValue(value)).toLowerCase() === wanted || String(value).toLowerCase() === wanted;
        return op === "=" ? equal : !equal;
      }
      const a = Number(value), b = Number(wanted);
      if (!isFinite(a) || !isFinite(b)) return false;
      return { "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b }[op];
    });
  }

  function rowText(run) {
    const params = Object.entries(run.params || {}).map(([k, v]) => `${k}=${formatValue(v)}`);
    return [runKey(run), run.name, run.status, ...(run.tags || []), run.notes, ...params, ...Object.keys(run.last || {})].join(" ").toLowerCase();
  }

  // Parameters whose values differ between the runs listed come first, highlighted.
  function differingKeys(runs) {
    const values = new Map();
    for (const run of runs) for (const [k, v] of Object.entries(run.params || {})) {
      if (!values.has(k)) values.set(k, new Set());
      values.get(k).add(JSON.stringify(v));
    }
    const differ = new Set();
    for (const [k, set] of values) if (set.size > 1 || runs.some((r) => !(k in (r.params || {})))) differ.add(k);
    return differ;
  }

  const lastOf = (run, metric) => {
    const value = run.last && run.last[metric] ? run.last[metric].value : null;
    return typeof value === "number" ? value : null;
  };
  function columns() {
    const out = [
      ["run", "run", (r) => runLabel(r)],
      ["status", "status", (r) => r.status || ""],
      ["start", "started (UTC)", (r) => r.start_time_unix_nano],
      ["duration", "duration", (r) => runDuration(r)],
      ["ranks", "ranks", (r) => (r.ranks || []).length],
      ["points", "points", (r) => r.points],
    ];
    if (state.metric) out.push(["metric", `${state.metric} (last)`, (r) => lastOf(r, state.metric)]);
    out.push(["params", "parameters", (r) => Object.keys(r.params || {}).length], ["last", "last values", (r) => Object.keys(r.last || {}).length]);
    return out;
  }

  // The metrics any run has a last value of, for "sort by"; training metrics first.
  function fillMetricBox() {
    const names = [...new Set(state.runs.flatMap((r) => Object.keys(r.last || {})))].sort(byTrainingFirst);
    if (state.metric && !names.includes(state.metric)) names.unshift(state.metric);
    const wanted = [["", "sort by a metric's last value…"], ...names.map((n) => [n, n])];
    const held = [...metricBox.options].map((o) => o.value);
    if (held.length === wanted.length && held.every((v, i) => v === wanted[i][0])) return;
    metricBox.replaceChildren(...wanted.map(([value, text]) => el("option", { value, selected: value === state.metric }, text)));
  }

  function renderHead() {
    const row = el("tr", {}, el("th", {}, el("input", { type: "checkbox", title: "tick every run shown", onchange: (e) => {
      for (const box of tbody.querySelectorAll("input[type=checkbox]")) { box.checked = e.target.checked; box.dispatchEvent(new Event("change")); }
    } })));
    for (const [key, title] of columns()) {
      const arrow = state.sort.key === key ? (state.sort.descending ? " ▾" : " ▴") : "";
      row.append(el("th", { class: "sortable", onclick: () => {
        state.sort = { key, descending: state.sort.key === key ? !state.sort.descending : false };
        render();
      } }, title + arrow));
    }
    document.querySelector("#runs thead").replaceChildren(row);
  }

  function render() {
    renderHead();
    const terms = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = state.runs.filter((run) => matches(run, rowText(run), terms));
    const [, , sortValue] = columns().find(([key]) => key === state.sort.key) || columns()[2];
    shown.sort((a, b) => {
      const x = sortValue(a), y = sortValue(b);
      if (x === null || y === null) return (x === null) - (y === null); // runs without a value last, either way
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return state.sort.descending ? -order : order;
    });
    const differ = differingKeys(shown);
    tbody.replaceChildren(...shown.map((run) => {
      const key = runKey(run);
      const params = Object.entries(run.params || {}).sort(([a], [b]) => differ.has(b) - differ.has(a) || a.localeCompare(b));
      const last = Object.entries(run.last || {}).sort(([a], [b]) => isSystem(a) - isSystem(b) || a.localeCompare(b));
      const sorted = state.metric ? run.last && run.last[state.metric] : null;
      // One line a run: a long name is cut with an ellipsis, and shown whole on hover.
      return el("tr", { "data-run": key },
        el("td", {}, el("input", { type: "checkbox", checked: state.chosen.has(key), onchange: (e) => { if (e.target.checked) state.chosen.add(key); else state.chosen.delete(key); } })),
        el("td", { class: "run-name" }, el("a", { href: `/run?run=${encodeURIComponent(key)}`, title: runLabel(run) }, runLabel(run)), (run.tags || []).map((t) => el("span", { class: "tag" }, t))),
        el("td", {}, statusBadge(run.status)),
        el("td", { class: "nowrap" }, formatTime(run.start_time_unix_nano)),
        el("td", { class: "num" }, formatDuration(runDuration(run))),
        el("td", { class: "num" }, formatRanks(run.ranks)),
        el("td", { class: "num" }, String(run.points)),
        state.metric ? el("td", { class: "num metric-last", title: sorted ? `${state.metric} = ${sorted.value ?? "–"} at step ${sorted.step ?? "–"}` : "" }, formatNumber(sorted ? sorted.value : null)) : null,
        el("td", { class: "params" }, params.map(([k, v]) => el("span", { class: differ.has(k) ? "chip differs" : "chip", title: `${k}=${formatValue(v)}` }, `${k}=${formatValue(v)}`))),
        el("td", { class: "last" }, last.slice(0, LAST_VALUES_SHOWN).map(([k, v]) => el("span", { class: "chip", title: `${k} = ${v.value ?? "–"} at step ${v.step ?? "–"}` }, `${k} ${formatNumber(v.value)}`)),
          last.length > LAST_VALUES_SHOWN ? el("span", { class: "more", title: last.slice(LAST_VALUES_SHOWN).map(([k, v]) => `${k} ${formatNumber(v.value)}`).join("\n") }, `+${last.length - LAST_VALUES_SHOWN} more`) : null));
    }));
    ORM.setStatus(`${shown.length} of ${state.runs.length} runs · updated ${new Date().toLocaleTimeString()}`);
    ORM.mark("runsShownMs");
  }

  async function load() {
    const answer = await api("/api/runs");
    state.runs = answer.runs;
    fillMetricBox();
    render();
  }

  function setUrl(key, value) {
    const query = new URLSearchParams(location.search);
    if (value) query.set(key, value); else query.delete(key);
    history.replaceState(null, "", `${location.pathname}${query.toString() ? "?" + query : ""}`);
  }
  filterBox.addEventListener("input", () => { setUrl("q", filterBox.value); render(); });
  metricBox.addEventListener("change", () => {
    state.metric = metricBox.value;
    state.sort = state.metric ? { key: "metric", descending: false } : { key: "start", descending: true };
    setUrl("by", state.metric);
    render();
  });
  document.getElementById("compare").addEventListener("click", () => {
    const shown = [...tbody.querySelectorAll("tr")].map((tr) => tr.dataset.run);
    const runs = state.chosen.size ? [...state.chosen] : shown.slice(0, 10);
    location.href = "/compare?" + new URLSearchParams(runs.map((r) => ["run", r]));
  });

  const interval = ORM.refreshMs() * 5;
  const tick = () => {
    const next = () => { if (interval) setTimeout(tick, interval); };
    if (document.hidden) return next();
    load().then(next, (error) => { ORM.setStatus(String(error.message || error), true); next(); });
  };
  tick();
})();
