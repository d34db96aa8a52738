// The run page (/run?run=R): one run's metadata, the skew across its ranks, and a chart of every
// metric it has, grouped by prefix and kept live. A run id the store does not know is said so.
"use strict";

(() => {
  const { api, el, formatTime, formatDuration, formatRanks, formatValue, runDuration, runLabel, runKey, statusBadge, byTrainingFirst } = ORM;
  const params = ORM.pageParams();
  const run = params.get("run") ?? "";
  const shown = run || "(none)";

  ORM.header("runs");
  const chartsNode = document.getElementById("charts");
  const board = new Charts.Board(chartsNode, Controls.fromUrl(params));
  board.emptyText = `No points for run ${shown} yet.`;
  const writeUrl = () => Controls.writeUrl(board, false);
  board.onLogChange = writeUrl;

  async function runPage() {
    document.getElementById("title").textContent = `Run ${shown}`;
    document.getElementById("controls").append(Controls.build(board, () => { writeUrl(); board.draw(); }));
    const finding = api("/api/metrics", { run });
    ORM.loadPlotly();
    const found = await finding;
    const metrics = (found.runs[run] || []).sort(byTrainingFirst); // training metrics first, then host, process and GPU
    board.starts[run] = found.start_time_unix_nano[run] ? Math.floor(found.start_time_unix_nano[run] / 1e6) : undefined;
    board.data.lastId = found.last_id;
    let listing = null;
    if (!metrics.length) {
      // No points: a run that has not logged yet, or no run by that name at all.
      listing = await api("/api/runs");
      if (!listing.runs.some((r) => runKey(r) === run)) board.emptyText = `No run named “${shown}” in this store.`;
    }
    await board.select([run], metrics);
    writeUrl();
    // A metric the run starts logging later (validation every N steps) gets its chart: every
    // tenth update asks for the run's metric names again (index probes, no scan).
    board.onUpdate = () => {
      if (ORM.marks.updates % 10) return;
      api("/api/metrics", { run }).then((latest) => {
        const fresh = (latest.runs[run] || []).filter((m) => !board.metrics.includes(m));
        if (fresh.length) board.select([run], [...board.metrics, ...fresh].sort(byTrainingFirst));
      }, () => {});
    };
    board.startPolling(ORM.refreshMs());
    // The metadata comes second: the runs summary reads the whole store, the charts need not wait.
    const { runs } = listing || (await api("/api/runs"));
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

  // The skew table goes in its own section (id rank-skew: "ranks" is the selector's).
  function renderRanks(skew) {
    let node = document.getElementById("rank-skew");
    if (!node) {
      node = el("section", { id: "rank-skew" });
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

  function showMeta(meta) {
    board.labels[runKey(meta)] = meta.name || runKey(meta) || "(none)";
    document.getElementById("title").textContent = `Run ${runLabel(meta)}`;
    const facts = [
      ["status", statusBadge(meta.status)], ["started (UTC)", formatTime(meta.start_time_unix_nano)], ["duration", formatDuration(runDuration(meta))],
      ["ranks", formatRanks(meta.ranks)], ["restarts", (meta.restarts || []).join(",") || "–"], ["points", String(meta.points)],
    ];
    if (meta.tags && meta.tags.length) facts.push(["tags", meta.tags.join(", ")]);
    const runParams = Object.entries(meta.params || {}).sort(([a], [b]) => a.localeCompare(b));
    document.getElementById("meta").replaceChildren(...[
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      meta.notes ? el("p", { class: "notes" }, meta.notes) : null,
      runParams.length ? el("table", { class: "params" }, el("tbody", {}, runParams.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, formatValue(v)))))) : null,
      el("p", {}, el("a", { href: `/compare?run=${encodeURIComponent(runKey(meta))}` }, "Compare with other runs →"))].filter(Boolean));
  }

  runPage().catch((error) => ORM.setStatus(String(error.message || error), true));
})();
