// The search space (the MAP-Elites grid of elites, the islands and their migrations) and the comparison of runs
// (best-so-far curves on one plot, cost per improvement).
"use strict";

EF.views.space = {
  async render() {
    const s = await EF.runApi("search-space");
    EF.spaceData = s;
    const el = EF.el;
    const f = s.features;
    return el("div", { id: "space" }, el("h1", {}, "Search space"),
      el("p", { class: "muted" }, "sampler " + s.sampler + " · " + s.placed + " scored trials placed on " +
        f.map((x) => x.name + " (" + x.bins + " bins, " + x.min + "–" + x.max + ")").join(" × ")),
      el("div", { class: "panel" }, el("h2", {}, "MAP-Elites grid: each cell's elite"),
        f.length <= 2 ? el("div", { id: "plot-grid", class: "plot" }) : null,
        EF.table(["cell", "elite", "score", "trials in cell"], s.cells.map((c) => ["(" + c.cell.join(", ") + ")", EF.trialLink(c.trial), EF.fmt(c.score), String(c.count)]))),
      el("div", { class: "panel" }, el("h2", {}, "Islands"),
        el("p", {}, s.islands.count + " island(s), " + s.islands.migrations + " migration(s)"),
        s.islands.events.length ? EF.table(["after N trials", "from island", "to island", "trials"],
          s.islands.events.map((e) => [String(e.after), String(e.source), String(e.target), e.trials.map(EF.trialLink)]))
          : el("p", { class: "muted" }, "no migration recorded"),
        EF.table(["island", "trials held", "best", "best score", "migrants received"],
          s.islands.islands.map((i) => [String(i.island), String(i.members), i.best_trial ? EF.trialLink(i.best_trial) : "—",
            EF.fmt(i.best_score), i.migrants.length ? i.migrants.map(EF.trialLink) : "none"]))));
  },
  after(page) {
    const s = EF.spaceData;
    const node = page.querySelector("#plot-grid");
    if (!node) return;
    const [fx, fy] = s.features;
    const z = Array.from({ length: fy ? fy.bins : 1 }, () => Array(fx.bins).fill(null));
    const ids = Array.from({ length: fy ? fy.bins : 1 }, () => Array(fx.bins).fill(null));
    for (const c of s.cells) { z[c.cell[1] || 0][c.cell[0]] = c.score; ids[c.cell[1] || 0][c.cell[0]] = c.trial; }
    EF.plot(node, [{ type: "heatmap", z, customdata: ids, colorscale: "Viridis", hoverongaps: false,
      hovertemplate: "cell (%{x}, %{y})<br>elite #%{customdata}<br>score %{z}<extra></extra>" }],
    { xaxis: { title: { text: EF.plotText(fx.name) + " bin" } }, yaxis: fy ? { title: { text: EF.plotText(fy.name) + " bin" } } : { visible: false } });
    EF.clickToTrial(node);
  },
};

EF.views.compare = {
  async render() {
    const el = EF.el;
    const chosen = new Set(EF.runs.map((r) => r.run));
    const boxes = EF.runs.map((r) => {
      const box = el("input", { type: "checkbox", value: r.run, checked: "checked" });
      box.addEventListener("change", () => { box.checked ? chosen.add(r.run) : chosen.delete(r.run); draw(); });
      return el("label", {}, box, " " + r.label + " (" + r.task + ")");
    });
    const table = el("div", {});
    const plot = el("div", { id: "plot-compare", class: "plot" });
    const draw = async () => {
      const data = await EF.api("/api/compare", { run: [...chosen] });
      table.replaceChildren(EF.table(["run", "task", "trials", "best", "improvements", "LLM $", "$ per improvement", "eval s per improvement"],
        data.runs.map((r) => [r.label, r.task, String(r.trials), EF.fmt(r.best), String(r.improvements), EF.fmt(r.llm_cost_usd, 4),
          r.cost_per_improvement_usd === null ? "—" : EF.fmt(r.cost_per_improvement_usd, 4), EF.fmt(r.eval_seconds_per_improvement, 4)])));
      EF.plot(plot, data.runs.map((r) => ({ type: "scatter", mode: "lines", line: { shape: "hv" }, name: EF.plotText(r.label),
        x: r.curve.map((p) => p.trial), y: r.curve.map((p) => p.best) })),
      { xaxis: { title: { text: "trial" } }, yaxis: { title: { text: "best score so far" } } });
    };
    EF.compareDraw = draw;
    return el("div", { id: "compare" }, el("h1", {}, "Compare runs"), el("div", { class: "toolbar" }, boxes),
      el("div", { class: "panel" }, plot), el("div", { class: "panel" }, table));
  },
  after() { EF.compareDraw().catch(EF.showError); },
};
