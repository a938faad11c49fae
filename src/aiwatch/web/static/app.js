// aiwatch web: the few lines of script the pages use; every page works without them.
"use strict";

// Theme editor: recount the preview as the threshold moves (the server sent every probability).
function livePreview() {
  const data = document.getElementById("preview-data");
  const number = document.getElementById("threshold");
  const range = document.getElementById("threshold-range");
  if (!data || !number || !range) return;
  const d = JSON.parse(data.textContent);
  const show = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
  function recount(t) {
    let flagged = 0, tp = 0, said = 0, relevant = 0, added = 0, gone = 0;
    d.p.forEach((p, i) => {
      const j = d.j[i], model = p >= t, flag = j >= 0 ? j === 1 : model;
      flagged += flag;
      if (flag && !d.now[i]) added++;
      if (!flag && d.now[i]) gone++;
      if (j >= 0 && model) { said++; if (j === 1) tp++; }
      if (j === 1) relevant++;
    });
    show("flag-count", flagged);
    show("flag-threshold", t.toFixed(2));
    show("flag-new", added);
    show("flag-gone", gone);
    show("precision", said ? (tp / said).toFixed(2) : "–");
    show("recall", relevant ? (tp / relevant).toFixed(2) : "–");
    document.querySelectorAll("#preview-list li").forEach(li => {
      const j = Number(li.dataset.j), flag = j >= 0 ? j === 1 : Number(li.dataset.p) >= t;
      li.className = flag ? "flag" : "noflag";
    });
  }
  range.addEventListener("input", () => { number.value = range.value; recount(Number(range.value)); });
  number.addEventListener("input", () => {
    const t = Number(number.value);
    if (number.value !== "" && t >= 0 && t <= 1) { range.value = number.value; recount(t); }
  });
  recount(Number(number.value));
}

document.addEventListener("DOMContentLoaded", livePreview);
