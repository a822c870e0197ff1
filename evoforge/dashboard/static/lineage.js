// The lineage tree: every trial a node under its parent (laid out by the server), coloured by status, the path from
// the seed to the best trial drawn thick; click a node to open its trial. Plain SVG traces stay usable at 2,000.
"use strict";

EF.views.lineage = {
  live: true,
  async render() {
    EF.lineageData = await EF.runApi("lineage");
    const el = EF.el;
    const jump = el("input", { type: "number", min: "1", placeholder: "trial #", id: "jump" });
    const go = () => { if (jump.value) EF.go("trial", parseInt(jump.value, 10)); };
    jump.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    const d = EF.lineageData;
    return el("div", { id: "lineage" },
      el("h1", {}, "Lineage"),
      el("div", { class: "toolbar" },
        el("span", { class: "muted" }, d.nodes.length + " trials; best path: " +
          (d.best_path.length ? d.best_path.map((i) => "#" + i).join(" → ") : "none yet")),
        jump, el("button", { onclick: go }, "open")),
      el("div", { class: "panel" }, el("div", { id: "plot-lineage", class: "plot tall" })));
  },
  after(page) {
    const d = EF.lineageData;
    const byId = new Map(d.nodes.map((n) => [n.id, n]));
    const edge = { x: [], y: [] };
    for (const n of d.nodes) {
      const p = byId.get(n.parent);
      if (p) { edge.x.push(p.x, n.x, null); edge.y.push(-p.depth, -n.depth, null); }
    }
    const path = d.best_path.map((i) => byId.get(i)).filter(Boolean);
    const small = d.nodes.length > 500;
    const traces = [
      { type: "scatter", mode: "lines", name: "parent → child", x: edge.x, y: edge.y, hoverinfo: "skip",
        line: { color: "#c5cad3", width: 1 } },
      { type: "scatter", mode: "lines", name: "path to the champion", x: path.map((n) => n.x), y: path.map((n) => -n.depth),
        hoverinfo: "skip", line: { color: "#f2b705", width: 4 } },
    ];
    const byStatus = {};
    for (const n of d.nodes) (byStatus[n.status] = byStatus[n.status] || []).push(n);
    for (const [status, list] of Object.entries(byStatus)) {
      traces.push({
        type: "scatter", mode: "markers", name: status + " (" + list.length + ")",
        x: list.map((n) => n.x), y: list.map((n) => -n.depth), customdata: list.map((n) => n.id),
        text: list.map((n) => "#" + n.id + " " + EF.plotText(n.name) + "<br>score " + EF.fmt(n.score)),
        hovertemplate: "%{text}<extra>" + status + "</extra>",
        marker: { color: EF.STATUS_COLORS[status] || "#555", size: small ? 6 : 12,
          line: { width: list.map((n) => (n.id === d.best_trial ? 3 : 0)), color: "#1d2330" } },
      });
    }
    const node = page.querySelector("#plot-lineage");
    EF.plot(node, traces, { xaxis: { visible: false }, yaxis: { title: { text: "generation" }, zeroline: false,
      tickvals: [...new Set(d.nodes.map((n) => -n.depth))], ticktext: [...new Set(d.nodes.map((n) => String(n.depth)))] },
      dragmode: "pan" });
    EF.clickToTrial(node);
  },
};
