// The run page (/run?run=R: one run's metadata and every metric it has) and the comparison page
// (/compare?run=A&run=B&metric=M...: chosen metrics of chosen runs overlaid). Both draw with a
// Charts.Board; the controls (x axis, smoothing, ranks) and the selection live in the URL, so
// a view can be bookmarked or sent.
"use strict";

(() => {
  const { api, el, formatTime, formatDuration, formatRanks, formatValue, runDuration, runLabel, runKey, statusBadge } = ORM;
  const page = document.body.dataset.page;
  const params = ORM.pageParams();
  const SYSTEM_PREFIXES = ["system.", "process.", "hw."];

  const options = {
    x: ["step", "time", "wall"].includes(params.get("x")) ? params.get("x") : "step",
    smooth: ["none", "ema", "mean"].includes(params.get("smooth")) ? params.get("smooth") : "none",
    weight: clamp(Number(params.get("weight") ?? 0.6), 0, 0.99),
    window: clamp(Math.round(Number(params.get("window") ?? 10)), 1, 500),
    ranks: params.get("ranks") === "split" ? "split" : "overlay",
  };
  function clamp(v, lo, hi) { return isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo; }

  ORM.header(page === "compare" ? "compare" : "runs");
  const chartsNode = document.getElementById("charts");
  const board = new Charts.Board(chartsNode, options);

  function writeUrl() {
    const query = new URLSearchParams();
    for (const run of board.runs) query.append("run", run);
    if (page === "compare") for (const metric of board.metrics) query.append("metric", metric);
    for (const [key, value] of Object.entries(options)) query.set(key, String(value));
    if (params.has("refresh")) query.set("refresh", params.get("refresh"));
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  // x axis, smoothing (kind + one slider whose meaning follows the kind), ranks; live on/off.
  function controls() {
    const slider = el("input", { type: "range", id: "smooth-amount" });
    const amount = el("span", { class: "amount" });
    const syncSlider = () => {
      const ema = options.smooth === "ema";
      Object.assign(slider, ema ? { min: 0, max: 0.99, step: 0.01, value: options.weight } : { min: 1, max: 200, step: 1, value: options.window });
      slider.disabled = options.smooth === "none";
      amount.textContent = options.smooth === "none" ? "" : ema ? `weight ${options.weight.toFixed(2)}` : `${options.window} points`;
    };
    const select = (id, value, choices, onchange) => el("select", { id, onchange: (e) => onchange(e.target.value) }, choices.map(([v, text]) => el("option", { value: v, selected: v === value }, text)));
    const redraw = () => { writeUrl(); board.draw(); };
    slider.addEventListener("input", () => {
      if (options.smooth === "ema") options.weight = Number(slider.value); else options.window = Number(slider.value);
      syncSlider(); redraw();
    });
    syncSlider();
    const live = el("input", { type: "checkbox", id: "live", checked: true, onchange: (e) => { board.live = e.target.checked; } });
    return el("div", { class: "controls" },
      el("label", {}, "x ", select("x-axis", options.x, [["step", "step"], ["time", "time (relative)"], ["wall", "wall clock"]], (v) => { options.x = v; redraw(); })),
      el("label", {}, "smoothing ", select("smoothing", options.smooth, [["none", "none"], ["ema", "EMA"], ["mean", "trailing mean"]], (v) => { options.smooth = v; syncSlider(); redraw(); })),
      slider, amount,
      el("label", {}, "ranks ", select("ranks", options.ranks, [["overlay", "overlaid"], ["split", "split"]], (v) => { options.ranks = v; redraw(); })),
      el("label", {}, live, " live"),
      el("span", { id: "status" }));
  }

  function isSystem(name) { return SYSTEM_PREFIXES.some((p) => name.startsWith(p)); }

  // --- the run page -------------------------------------------------------------------------

  async function runPage() {
    const run = params.get("run") ?? "";
    document.getElementById("title").textContent = `Run ${run || "(none)"}`;
    document.getElementById("controls").append(controls());
    const finding = api("/api/metrics", { run });
    ORM.loadPlotly();
    const found = await finding;
    const metrics = found.runs[run] || [];
    board.starts[run] = found.start_time_unix_nano[run] ? Math.floor(found.start_time_unix_nano[run] / 1e6) : undefined;
    board.data.lastId = found.last_id;
    if (!metrics.length) chartsNode.append(el("p", { class: "empty" }, `No points for run ${run || "(none)"} in this store.`));
    // Training metrics first, then host, process and GPU metrics.
    metrics.sort((a, b) => isSystem(a) - isSystem(b) || a.localeCompare(b));
    await board.select([run], metrics);
    writeUrl();
    // A metric the run starts logging later (validation every N steps) gets its chart: every
    // tenth update asks for the run's metric names again (index probes, no scan).
    board.onUpdate = () => {
      if (ORM.marks.updates % 10) return;
      api("/api/metrics", { run }).then((latest) => {
        const fresh = (latest.runs[run] || []).filter((m) => !board.metrics.includes(m));
        if (fresh.length) board.select([run], [...board.metrics, ...fresh].sort((a, b) => isSystem(a) - isSystem(b) || a.localeCompare(b)));
      }, () => {});
    };
    board.startPolling(ORM.refreshMs());
    // The metadata comes second: the runs summary reads the whole store, the charts need not wait.
    const { runs } = await api("/api/runs");
    const meta = runs.find((r) => runKey(r) === run);
    if (meta) {
      showMeta(meta);
      if (meta.name) board.draw(); // the legend names the run
    }
    // A run of several ranks: who is behind, how fast each steps (refreshed every tenth update).
    if (meta && (meta.ranks || []).length > 1) {
      const showRanks = () => api("/api/ranks", { run }).then(renderRanks, () => {});
      await showRanks();
      const before = board.onUpdate;
      board.onUpdate = () => { before(); if (!(ORM.marks.updates % 10)) showRanks(); };
    }
  }

  function renderRanks(skew) {
    let node = document.getElementById("ranks");
    if (!node) {
      node = el("section", { id: "ranks" });
      document.getElementById("meta").after(node);
    }
    const slow = skew.slowest;
    const rate = (r) => (r.step_rate_per_s == null ? "–" : r.step_rate_per_s.toFixed(2));
    const util = (r) => (r.gpu_utilization == null ? "–" : `${Math.round(r.gpu_utilization * 100)}%`);
    const rows = skew.ranks.map((r) => el("tr", { class: slow && r.rank === slow.rank ? "slowest" : "" },
      el("td", {}, String(r.rank)), el("td", {}, r.last_step == null ? "–" : String(r.last_step)),
      el("td", {}, r.steps_behind == null ? "–" : String(r.steps_behind)), el("td", {}, rate(r)),
      el("td", {}, `${r.seconds_since_last_point.toFixed(1)} s`), el("td", {}, util(r))));
    const verdict = slow
      ? `Slowest: rank ${slow.rank} at ${slow.step_rate_per_s.toPrecision(3)} steps/s, ${Math.round(slow.below_median * 100)}% below the median`
        + (slow.steps_behind ? `, ${slow.steps_behind} steps behind the leader` : "")
      : "No slowest rank: fewer than two ranks with a step rate.";
    node.replaceChildren(
      el("h3", {}, "Ranks"),
      el("table", { class: "ranks" },
        el("thead", {}, el("tr", {}, ["rank", "last step", "behind", "steps/s", "last point", "GPU util"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)),
      el("p", { class: "verdict" }, verdict),
      el("p", { class: "hint" }, `Rates and GPU utilisation over each rank's last ${skew.window_s} s.`));
  }

  function showMeta(run) {
    board.labels[runKey(run)] = run.name || runKey(run) || "(none)";
    document.getElementById("title").textContent = `Run ${runLabel(run)}`;
    const facts = [
      ["status", statusBadge(run.status)], ["started (UTC)", formatTime(run.start_time_unix_nano)], ["duration", formatDuration(runDuration(run))],
      ["ranks", formatRanks(run.ranks)], ["restarts", (run.restarts || []).join(",") || "–"], ["points", String(run.points)],
    ];
    if (run.tags && run.tags.length) facts.push(["tags", run.tags.join(", ")]);
    const params = Object.entries(run.params || {}).sort(([a], [b]) => a.localeCompare(b));
    const node = document.getElementById("meta");
    node.replaceChildren(...[
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      run.notes ? el("p", { class: "notes" }, run.notes) : null,
      params.length ? el("table", { class: "params" }, el("tbody", {}, params.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, formatValue(v)))))) : null,
      el("p", {}, el("a", { href: `/compare?run=${encodeURIComponent(runKey(run))}` }, "Compare with other runs →"))].filter(Boolean));
  }

  // --- the comparison page ------------------------------------------------------------------

  async function comparePage() {
    document.getElementById("controls").append(controls());
    const side = document.getElementById("side");
    const listing = api("/api/runs");
    ORM.loadPlotly();
    const { runs, last_id: lastId } = await listing;
    board.data.lastId = lastId;
    for (const run of runs) board.labels[runKey(run)] = run.name || runKey(run) || "(none)";
    const known = new Set(runs.map(runKey));
    let chosenRuns = params.getAll("run").filter((r) => known.has(r));
    if (!chosenRuns.length) chosenRuns = runs.slice(-2).map(runKey);
    const metricsOf = (keys) => [...new Set(runs.filter((r) => keys.includes(runKey(r))).flatMap((r) => r.metrics || []))].sort((a, b) => isSystem(a) - isSystem(b) || a.localeCompare(b));
    let chosenMetrics = params.getAll("metric");
    if (!chosenMetrics.length) chosenMetrics = metricsOf(chosenRuns).filter((m) => !isSystem(m)).slice(0, 4);
    for (const run of runs) if (chosenRuns.includes(runKey(run))) board.starts[runKey(run)] = Math.floor(run.start_time_unix_nano / 1e6);

    const runList = el("div", { class: "checklist", id: "run-list" });
    const metricList = el("div", { class: "checklist", id: "metric-list" });
    const apply = () => { board.select(chosenRuns, chosenMetrics).then(writeUrl); };
    const fillRuns = (filter) => runList.replaceChildren(...runs.filter((r) => !filter || JSON.stringify([r.run, r.name, r.params, r.status, r.tags]).toLowerCase().includes(filter)).map((run) => {
      const key = runKey(run);
      const box = el("input", { type: "checkbox", value: key, checked: chosenRuns.includes(key), onchange: (e) => {
        chosenRuns = e.target.checked ? [...chosenRuns, key] : chosenRuns.filter((r) => r !== key);
        if (e.target.checked) board.starts[key] = Math.floor(run.start_time_unix_nano / 1e6);
        fillMetrics(""); apply();
      } });
      return el("label", { title: JSON.stringify(run.params || {}) }, box, " ", runLabel(run), " ", run.status ? statusBadge(run.status) : null);
    }));
    const fillMetrics = (filter) => metricList.replaceChildren(...metricsOf(chosenRuns).filter((m) => !filter || m.toLowerCase().includes(filter)).map((metric) => {
      const box = el("input", { type: "checkbox", value: metric, checked: chosenMetrics.includes(metric), onchange: (e) => {
        chosenMetrics = e.target.checked ? [...chosenMetrics, metric] : chosenMetrics.filter((m) => m !== metric);
        apply();
      } });
      return el("label", {}, box, " ", metric);
    }));
    side.append(
      el("h3", {}, "Runs"), el("input", { type: "search", placeholder: "filter runs", oninput: (e) => fillRuns(e.target.value.toLowerCase()) }), runList,
      el("h3", {}, "Metrics"), el("input", { type: "search", placeholder: "filter metrics", oninput: (e) => fillMetrics(e.target.value.toLowerCase()) }), metricList);
    fillRuns("");
    fillMetrics("");
    await board.select(chosenRuns, chosenMetrics);
    writeUrl();
    board.startPolling(ORM.refreshMs());
  }

  (page === "run" ? runPage() : comparePage()).catch((error) => ORM.setStatus(String(error.message || error), true));
})();
