// Project settings form: list settings (flags) edited as rows, with Add and Remove. Without JS the rows
// already there and one blank row still submit; empty rows are ignored by the server.
(function () {
  "use strict";
  function renumber(list) {
    var label = list.dataset.label || "item";
    list.querySelectorAll("li input").forEach(function (input, i) {
      input.setAttribute("aria-label", input.value ? label + " " + (i + 1) : label + ", new item");
    });
  }
  function addRow(list) {
    var template = list.querySelector("li:last-child");
    if (!template) { return null; }
    var row = template.cloneNode(true);
    var input = row.querySelector("input");
    input.value = "";
    input.removeAttribute("id");
    list.appendChild(row);
    renumber(list);
    return input;
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-list-editor]").forEach(function (list) {
      list.querySelectorAll("[data-remove]").forEach(function (b) { b.hidden = false; });
      var add = document.querySelector('[data-add="' + list.id + '"]');
      if (add) { add.hidden = false; }
    });
  });
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLElement)) { return; }
    var jump = target.closest(".error-summary a[href^='#']");
    if (jump) {
      // The summary's links lead to the field itself, ready to type in, not just near it.
      var field = document.getElementById(jump.getAttribute("href").slice(1));
      if (field) { event.preventDefault(); field.scrollIntoView({ block: "center" }); field.focus(); }
      return;
    }
    if (target.matches("[data-list-editor] [data-remove]")) {
      var list = target.closest("[data-list-editor]");
      var row = target.closest("li");
      if (list.querySelectorAll("li").length > 1) { row.remove(); } else { row.querySelector("input").value = ""; }
      renumber(list);
    } else if (target.matches("[data-add]")) {
      var input = addRow(document.getElementById(target.dataset.add));
      if (input) { input.focus(); }
    }
  });
})();
