"use strict";
// Renders /api/agreement (the calibration report) as tables.
const percent = (v) => (v === null || v === undefined ? "-" : `${(100 * v).toFixed(1)}%`);
const number = (v) => (v === null || v === undefined ? "-" : v.toFixed(3));

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell;
    tr.append(td);
  }
  return tr;
}

function render(report) {
  document.getElementById("totals").textContent =
    `${report.raters} raters, ${report.label_rows} answers, ${report.skips} skips, ${report.gold_pairs} gold pairs`;
  const groups = [...Object.entries(report.categories), ["overall", report.overall]];
  document.querySelector("#groups tbody").replaceChildren(...groups.map(([name, g]) => row([
    name, g.pairs, g.scored, `${g.excluded.human_tie} / ${g.excluded.all_skipped} / ${g.excluded.unlabelled}`,
    percent(g.judge_accuracy), number(g.judge_kappa), percent(g.mean_rater_accuracy),
    percent(g.inter_rater.pairwise_agreement), number(g.inter_rater.fleiss_kappa)])));
  const raters = Object.keys(report.gold).sort();
  document.querySelector("#raters tbody").replaceChildren(...raters.map((r) => {
    const own = (table) => (Object.hasOwn(table, r) ? table[r] : undefined);  // rater ids are data, not property names
    const accuracy = own(report.overall.raters) || {scored: 0, accuracy: null};
    const gold = own(report.gold);
    return row([r, accuracy.scored, percent(accuracy.accuracy), gold.answered, percent(gold.accuracy), own(report.left_out) || "no"]);
  }));
}

async function refresh() {
  try {
    const response = await fetch("api/agreement");
    if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
    render(await response.json());
    document.getElementById("error").hidden = true;
  } catch (err) {
    Object.assign(document.getElementById("error"), {textContent: String(err), hidden: false});
  }
}

refresh();
setInterval(refresh, 10000);
