// The comparison page (/compare?run=A&run=B&metric=M...): chosen metrics of chosen runs overlaid,
// the parameters that differ between those runs, and runs coloured (and grouped in the legend)
// by a parameter's value. Run ids in the URL that the store does not know are named, not dropped
// in silence.
"use strict";

(() => {
  const { api, el, formatValue, runLabel, runKey, statusBadge, isSystem, byTrainingFirst } = ORM;
  const params = ORM.pageParams();

  ORM.header("compare");
  const board = new Charts.Board(document.getElementById("charts"), Controls.fromUrl(params));
  const writeUrl = () => Controls.writeUrl(board, true);
  board.onLogChange = writeUrl;
  let runs = [];

  function recolor() {
    const chosen = runs.filter((r) => board.runs.includes(runKey(r)));
    board.colors = board.options.color ? Colors.assign(chosen, board.options.color) : null;
  }

  // Colour by: the parameters of the runs shown, those whose values differ first.
  function colorChoices() {
    const chosen = runs.filter((r) => board.runs.includes(runKey(r)));
    const keys = [...new Set(chosen.flatMap((r) => Object.keys(r.params || {})))];
    const differs = (k) => new Set(chosen.map((r) => JSON.stringify(ORM.paramOf(r, k)))).size > 1;
    keys.sort((a, b) => differs(b) - differs(a) || a.localeCompare(b));
    if (board.options.color && !keys.includes(board.options.color)) keys.unshift(board.options.color);
    return [["", "run"], ...keys.map((k) => [k, k])];
  }

  const colorSelect = el("select", { id: "color-by", onchange: (e) => colorBy(e.target.value) });
  function fillColorSelect() {
    colorSelect.replaceChildren(...colorChoices().map(([v, text]) => el("option", { value: v, selected: v === board.options.color }, text)));
  }
  function colorBy(key) {
    board.options.color = key;
    colorSelect.value = key;
    recolor();
    writeUrl();
    board.draw();
  }

  // The parameters whose values differ between the runs shown (the store's differing_params,
  // as the CLI's compare prints them); a parameter's name colours the runs by it.
  async function showParamDiff() {
    const node = document.getElementById("param-diff");
    if (board.runs.length < 2) { node.replaceChildren(); return; }
    const answer = await api("/api/params", { run: board.runs });
    const keys = Object.keys(answer.params);
    const label = (key) => { const run = runs.find((r) => runKey(r) === key); return run ? runLabel(run) : key || "(none)"; };
    const same = answer.same ? ` ${answer.same} other parameter${answer.same > 1 ? "s are" : " is"} the same in every run.` : "";
    if (!keys.length) { node.replaceChildren(el("p", { class: "hint" }, `The runs' parameters do not differ.${same}`)); return; }
    node.replaceChildren(
      el("h3", {}, "Parameters that differ"),
      el("table", { class: "param-diff" },
        el("thead", {}, el("tr", {}, el("th", {}, "parameter"), answer.runs.map((r) => el("th", { title: label(r) }, label(r))))),
        el("tbody", {}, keys.map((key) => el("tr", { "data-param": key },
          el("th", {}, el("button", { type: "button", class: "link", title: `colour the runs by ${key}`, onclick: () => colorBy(key) }, key)),
          answer.runs.map((r) => el("td", {}, formatValue(answer.params[key][r]))))))),
      same ? el("p", { class: "hint" }, same.trim()) : null);
  }

  async function comparePage() {
    document.getElementById("controls").append(Controls.build(board, () => { writeUrl(); board.draw(); }, el("label", {}, "colour by ", colorSelect)));
    const side = document.getElementById("side");
    const listing = api("/api/runs");
    ORM.loadPlotly();
    const answer = await listing;
    runs = answer.runs;
    board.data.lastId = answer.last_id;
    for (const run of runs) board.labels[runKey(run)] = run.name || runKey(run) || "(none)";
    const known = new Set(runs.map(runKey));
    const asked = params.getAll("run");
    const unknown = asked.filter((r) => !known.has(r));
    document.getElementById("notices").replaceChildren(...unknown.map((r) => el("p", { class: "notice" }, `No run named “${r || "(none)"}” in this store.`)));
    let chosenRuns = asked.filter((r) => known.has(r));
    if (!chosenRuns.length && !asked.length) chosenRuns = runs.slice(-2).map(runKey);
    const metricsOf = (keys) => [...new Set(runs.filter((r) => keys.includes(runKey(r))).flatMap((r) => r.metrics || []))].sort(byTrainingFirst);
    let chosenMetrics = params.getAll("metric");
    if (!chosenMetrics.length) chosenMetrics = metricsOf(chosenRuns).filter((m) => !isSystem(m)).slice(0, 4);
    for (const run of runs) if (chosenRuns.includes(runKey(run))) board.starts[runKey(run)] = Math.floor(run.start_time_unix_nano / 1e6);

    const runList = el("div", { class: "checklist", id: "run-list" });
    const metricList = el("div", { class: "checklist", id: "metric-list" });
    const apply = () => {
      board.runs = chosenRuns.slice();
      recolor();
      fillColorSelect();
      showParamDiff().catch((error) => ORM.setStatus(String(error.message || error), true));
      board.select(chosenRuns, chosenMetrics).then(writeUrl);
    };
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
    board.runs = chosenRuns.slice();
    recolor();
    fillColorSelect();
    const diff = showParamDiff();
    await board.select(chosenRuns, chosenMetrics);
    writeUrl();
    await diff;
    board.startPolling(ORM.refreshMs());
  }

  comparePage().catch((error) => ORM.setStatus(String(error.message || error), true));
})();
