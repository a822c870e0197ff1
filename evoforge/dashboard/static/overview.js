// The overview: cards (counts by status, best score and gain, spend, evaluation time, time saved by gates) and the
// score over trials and over time, every trial a dot coloured by status, with the best-so-far line.
"use strict";

EF.views.overview = {
  live: true,
  async render() {
    const o = await EF.runApi("overview");
    EF.overviewData = o;
    const el = EF.el;
    const counts = Object.entries(o.counts).filter(([, n]) => n > 0);
    const gates = Object.entries(o.saved_by_gate || {});
    return el("div", { id: "overview" },
      el("h1", {}, "Run ", o.label, " — task ", o.task),
      el("div", { class: "cards" },
        EF.card("trials", String(o.total), counts.map(([s, n]) => s + " " + n).join(", ")),
        o.champion ? EF.card("champion (" + o.direction + ")", EF.fmt(o.champion.mean) + " ± " + EF.fmt(o.champion.stderr, 2),
          el("span", {}, el("a", { class: "trial-link", href: EF.href("trial", o.champion.trial) }, "trial #" + o.champion.trial),
            o.champion.evaluations + " evaluations")) : null,
        EF.card("best single score", EF.fmt(o.best_score),
          o.best_trial ? el("a", { class: "trial-link", href: EF.href("trial", o.best_trial) }, "trial #" + o.best_trial) : null),
        EF.card("gain over the seed", o.gain === null ? "—" : EF.fmt(o.gain, 4),
          o.gain_pct === null ? null : EF.fmt(o.gain_pct, 3) + " %"),
        EF.card("evaluation time", EF.seconds(o.evaluation_seconds)),
        EF.card("time saved by gates", EF.seconds(o.seconds_saved),
          gates.map(([g, s]) => g + " " + EF.seconds(s)).join(", ") || null),
        EF.card("LLM spend", "$" + EF.fmt(o.llm_cost_usd, 4),
          o.llm_calls + " calls, " + o.llm_tokens_in + " in / " + o.llm_tokens_out + " out tokens"),
        EF.card("status", o.stopped_because || "running or not stopped")),
      el("div", { class: "status-counts" }, counts.map(([s, n]) => el("span", { class: "chip s-" + s }, s + " " + n))),
      el("div", { class: "grid2" },
        el("div", { class: "panel" }, el("h2", {}, "Score over trials"),
          el("div", { id: "plot-score-trials", class: "plot" })),
        el("div", { class: "panel" }, el("h2", {}, "Score over time"),
          el("div", { id: "plot-score-time", class: "plot" }))),
      el("div", { class: "panel" }, el("h2", {}, "Spend by model"),
        EF.table(["model", "calls", "tokens in", "tokens out", "cost $", "errors"],
          Object.entries(o.spend_by_model).map(([m, s]) => [m, s.calls, s.tokens_in, s.tokens_out, EF.fmt(s.cost_usd, 4), s.errors]))),
    );
  },
  after(page) {
    const o = EF.overviewData;
    const best = o.best_so_far;
    const line = (xs) => ({ type: "scatter", mode: "lines", name: "best so far", x: xs, y: best.map((p) => p.best),
      line: { shape: "hv", color: "#1d2330", width: 2 }, hoverinfo: "skip" });
    const byTrial = page.querySelector("#plot-score-trials");
    EF.plot(byTrial, [...EF.statusTraces(o.trials, (t) => t.id), line(best.map((p) => p.trial))],
      { xaxis: { title: { text: "trial" } }, yaxis: { title: { text: "score" } } });
    EF.clickToTrial(byTrial);
    // Over time, the best so far is recomputed in the order trials finished (not their ids).
    const byTime = page.querySelector("#plot-score-time");
    const timed = o.trials.filter((t) => t.finished_at).sort((a, b) => a.finished_at.localeCompare(b.finished_at));
    const better = (a, b) => (o.direction === "minimize" ? a < b : a > b);
    const steps = { x: [], y: [] };
    let top = null;
    for (const t of timed) {
      if (t.scored && (top === null || better(t.score, top))) top = t.score;
      if (top !== null) { steps.x.push(t.finished_at); steps.y.push(top); }
    }
    const timeLine = { type: "scatter", mode: "lines", name: "best so far", x: steps.x, y: steps.y,
      line: { shape: "hv", color: "#1d2330", width: 2 }, hoverinfo: "skip" };
    EF.plot(byTime, [...EF.statusTraces(timed, (t) => t.finished_at), timeLine],
      { xaxis: { title: { text: "finished at (UTC)" }, type: "date" }, yaxis: { title: { text: "score" } } });
    EF.clickToTrial(byTime);
  },
};
