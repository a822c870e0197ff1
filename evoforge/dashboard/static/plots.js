// evoforge dashboard plots: Plotly (served from the installed plotly package) with the dashboard's colours.
// Text from the record shown in hover labels goes through EF.plotText, so Plotly draws it as text, not markup.
"use strict";

EF.STATUS_COLORS = {
  succeeded: "#1f9d55", failed: "#d64545", pruned: "#e6a23c", rejected: "#8a8f98", running: "#2f6fde",
  proposed: "#9aa5b8",
};
EF.STATUS_SYMBOLS = { succeeded: "circle", failed: "x", pruned: "triangle-down", rejected: "square", running: "circle-open", proposed: "circle-open" };

// Plotly reads a few tags in labels (<b>, <br>, <a>): escape so names and motivations stay plain text.
EF.plotText = (s) => String(s === null || s === undefined ? "" : s)
  .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

EF.PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };

EF.plot = function (node, traces, layout) {
  const base = { margin: { l: 60, r: 20, t: 40, b: 50 }, hovermode: "closest", legend: { orientation: "h", y: 1.02, yanchor: "bottom" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff" };
  return Plotly.newPlot(node, traces, Object.assign(base, layout || {}), EF.PLOT_CONFIG);
};

// Clicking a point whose customdata is a trial id opens that trial.
EF.clickToTrial = function (node) {
  node.on("plotly_click", (event) => {
    const point = event.points && event.points[0];
    if (point && point.customdata !== undefined && point.customdata !== null) EF.go("trial", point.customdata);
  });
};

// Every trial as a dot coloured by status: x from `xOf`, y its score; trials without a score sit on a floor line
// under the lowest score, so failed, pruned and rejected trials still show.
EF.statusTraces = function (trials, xOf) {
  const scores = trials.map((t) => t.score).filter((s) => s !== null);
  const lo = scores.length ? Math.min(...scores) : 0;
  const hi = scores.length ? Math.max(...scores) : 1;
  const floor = lo - 0.08 * (hi - lo || 1);
  const byStatus = {};
  for (const t of trials) (byStatus[t.status] = byStatus[t.status] || []).push(t);
  return Object.entries(byStatus).map(([status, list]) => ({
    type: "scatter", mode: "markers", name: status + " (" + list.length + ")",
    x: list.map(xOf), y: list.map((t) => (t.score === null ? floor : t.score)), customdata: list.map((t) => t.id),
    text: list.map((t) => "#" + t.id + " " + EF.plotText(t.name) + (t.score === null ? " (no score)" : "")),
    hovertemplate: "%{text}<br>score %{y}<extra>" + status + "</extra>",
    marker: { color: EF.STATUS_COLORS[status] || "#555", symbol: EF.STATUS_SYMBOLS[status] || "circle", size: 8 },
  }));
};
