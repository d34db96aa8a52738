// The controls above a board's charts (x axis, smoothing, ranks, colour, live) and the URL that
// holds them with the selection, so a view can be bookmarked or sent. Shared by the run page
// and the comparison page.
"use strict";

const Controls = (() => {
  const { el } = ORM;

  function clamp(v, lo, hi) { return isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo; }

  // The options a page's URL asks for, each checked (anything else falls back to the default).
  function fromUrl(params) {
    return {
      x: ["step", "time", "wall"].includes(params.get("x")) ? params.get("x") : "step",
      smooth: ["none", "ema", "mean"].includes(params.get("smooth")) ? params.get("smooth") : "none",
      weight: clamp(Number(params.get("weight") ?? 0.6), 0, 0.99),
      window: clamp(Math.round(Number(params.get("window") ?? 10)), 1, 500),
      ranks: params.get("ranks") === "split" ? "split" : "overlay",
      color: params.get("color") || "",
      log: new Set(params.getAll("log")),
    };
  }

  // The page's URL for the board's runs (and, with metrics, its metrics) and the options.
  function writeUrl(board, withMetrics) {
    const params = ORM.pageParams();
    const query = new URLSearchParams();
    for (const run of board.runs) query.append("run", run);
    if (withMetrics) for (const metric of board.metrics) query.append("metric", metric);
    for (const [key, value] of Object.entries(board.options)) {
      if (key === "log") for (const metric of value) query.append("log", metric);
      else if (key !== "color" || value) query.set(key, String(value));
    }
    if (params.has("refresh")) query.set("refresh", params.get("refresh"));
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  function select(id, value, choices, onchange) {
    return el("select", { id, onchange: (e) => onchange(e.target.value) }, choices.map(([v, text]) => el("option", { value: v, selected: v === value }, text)));
  }

  // x axis, smoothing (kind + one slider whose meaning follows the kind), ranks; live on/off.
  // `redraw` is called after a change; `extra` nodes go before the status.
  function build(board, redraw, extra) {
    const options = board.options;
    const slider = el("input", { type: "range", id: "smooth-amount" });
    const amount = el("span", { class: "amount" });
    const syncSlider = () => {
      const ema = options.smooth === "ema";
      Object.assign(slider, ema ? { min: 0, max: 0.99, step: 0.01, value: options.weight } : { min: 1, max: 200, step: 1, value: options.window });
      slider.disabled = options.smooth === "none";
      amount.textContent = options.smooth === "none" ? "" : ema ? `weight ${options.weight.toFixed(2)}` : `${options.window} points`;
    };
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
      extra || null,
      el("label", {}, live, " live"),
      el("span", { id: "status" }));
  }

  return { build, fromUrl, select, writeUrl };
})();
