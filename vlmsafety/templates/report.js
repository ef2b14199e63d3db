// report.html's script: sortable tables and the response browser's filters. Bundled (no network).
"use strict";
(function () {
  function cellValue(row, i) {
    const cell = row.cells[i];
    return cell ? cell.textContent.trim() : "";
  }
  function compare(a, b) {
    const x = parseFloat(a), y = parseFloat(b);
    const numeric = a !== "" && b !== "" && !isNaN(x) && !isNaN(y) && isFinite(a) && isFinite(b);
    if (numeric) return x - y;
    return a.localeCompare(b, undefined, { numeric: true });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        const down = th.classList.contains("asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(down ? "desc" : "asc");
        const body = table.tBodies[0];
        const rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          const c = compare(cellValue(a, i), cellValue(b, i));
          return down ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  document.querySelectorAll("[data-browser]").forEach(function (browser) {
    const get = function (name) { return browser.querySelector('[data-f="' + name + '"]'); };
    const rows = Array.prototype.slice.call(browser.querySelectorAll("tr.prompt-row"));
    const count = browser.querySelector("[data-count]");
    const FIRST = 2; // the image and prompt cells come before the response cells
    function outcome(row, col) {
      const cell = row.cells[FIRST + col];
      return cell ? cell.getAttribute("data-o") : "";
    }
    function apply() {
      const cat = get("cat").value;
      const atCol = parseInt(get("at-col").value, 10);
      const atO = get("at-o").value;
      const a = get("ch-a").value, b = get("ch-b").value;
      const q = get("q").value.trim().toLowerCase();
      const disagree = get("disagree").checked;
      let shown = 0;
      rows.forEach(function (row) {
        let ok = !cat || row.getAttribute("data-cat") === cat;
        if (ok && atO) ok = outcome(row, atCol) === atO;
        if (ok && a !== "" && b !== "") ok = outcome(row, parseInt(a, 10)) !== outcome(row, parseInt(b, 10));
        if (ok && disagree) ok = row.querySelector("td.disagree") !== null;
        if (ok && q) ok = row.textContent.toLowerCase().indexOf(q) >= 0;
        row.classList.toggle("hidden", !ok);
        if (ok) shown += 1;
      });
      count.textContent = shown + " of " + rows.length + " prompts";
    }
    browser.querySelectorAll("[data-f]").forEach(function (el) {
      el.addEventListener(el.tagName === "INPUT" && el.type === "search" ? "input" : "change", apply);
    });
  });
})();
