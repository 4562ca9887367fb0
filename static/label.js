// The ranking page: drag (SortableJS, by the handle), keyboard ranking, ties, timers, heartbeats and the
// untouched-order guard. No inline code (CSP); re-initialised after every htmx swap of #task.
(function () {
  "use strict";
  var state = null; // per task: {id, start, active, visibleSince, touched, timer, beat}

  function $(sel, root) { return (root || document).querySelector(sel); }
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#cards > .card")); }
  function rankOf(card) { return parseInt(card.querySelector("select.rank").value, 10); }
  function csrf() { var m = $('meta[name="csrf-token"]'); return m ? m.getAttribute("content") : ""; }

  // Dense ranks in DOM order; tiedWithPrev(card, prev) decides whether a card shares the rank above.
  function renumber(tiedWithPrev) {
    var rank = 0, list = cards();
    list.forEach(function (card, i) {
      var tied = i > 0 && tiedWithPrev(card, list[i - 1]);
      if (!tied) { rank += 1; }
      card.querySelector("select.rank").value = String(rank);
      card.classList.toggle("tied", tied);
    });
  }
  function snapshot() {
    var ranks = new Map();
    cards().forEach(function (c) { ranks.set(c, rankOf(c)); });
    return ranks;
  }
  function touch() { if (state) { state.touched = true; } }

  function afterMove(moved, before) {
    renumber(function (card, prev) {
      return card !== moved && prev !== moved && before.get(card) === before.get(prev);
    });
    touch();
  }
  function moveTo(card, position) {
    var list = cards(), before = snapshot();
    position = Math.max(1, Math.min(position, list.length));
    var others = list.filter(function (c) { return c !== card; });
    var parent = card.parentNode;
    if (position > others.length) { parent.appendChild(card); } else { parent.insertBefore(card, others[position - 1]); }
    afterMove(card, before);
    card.focus();
  }
  function toggleTie(card) {
    var list = cards(), i = list.indexOf(card);
    if (i <= 0) { return; }
    var before = snapshot(), untie = card.classList.contains("tied");
    renumber(function (c, prev) {
      if (c === card) { return !untie; }
      return before.get(c) === before.get(prev);
    });
    touch();
  }
  function sortBySelects(changed) {
    var list = cards(), parent = list[0].parentNode;
    list.map(function (c, i) { return [rankOf(c), c === changed ? -1 : 0, i, c]; })
      .sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]; })
      .forEach(function (entry) { parent.appendChild(entry[3]); });
    var before = snapshot();
    renumber(function (c, prev) { return before.get(c) === before.get(prev); });
    touch();
  }

  function fmt(seconds) {
    var s = Math.floor(seconds), m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }
  function activeSeconds() {
    var extra = state.visibleSince ? (Date.now() - state.visibleSince) : 0;
    return (state.active + extra) / 1000;
  }
  function fillTimes(form) {
    if (!state) { return; }
    form.querySelector('input[name="wall_seconds"]').value = ((Date.now() - state.start) / 1000).toFixed(1);
    form.querySelector('input[name="active_seconds"]').value = activeSeconds().toFixed(1);
  }

  function heartbeat(task) {
    if (document.visibilityState !== "visible") { return; } // an idle hidden tab lets the lease run out
    fetch(task.dataset.heartbeatUrl, { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 409 || r.status === 404) {
          var box = $("#task-error");
          if (box) { box.textContent = "Your lease on this task ended; submitting may be refused, your input will be shown back."; }
        }
      })
      .catch(function () { /* offline: the next beat retries */ });
  }

  function init() {
    var task = $("#task");
    if (!task || !task.dataset.assignment) {
      if (state) { clearInterval(state.timer); clearInterval(state.beat); state = null; }
      return;
    }
    if (state && state.id === task.dataset.assignment && task.dataset.ready) { return; }
    if (state) { clearInterval(state.timer); clearInterval(state.beat); }
    task.dataset.ready = "1";
    state = { id: task.dataset.assignment, start: Date.now(), active: 0,
      visibleSince: document.visibilityState === "visible" ? Date.now() : null, touched: false };
    var clock = $("[data-timer]", task);
    state.timer = setInterval(function () { if (clock) { clock.textContent = fmt((Date.now() - state.start) / 1000); } }, 1000);
    var every = parseInt(task.dataset.heartbeatSeconds || "60", 10) * 1000;
    state.beat = setInterval(function () { heartbeat(task); }, every);
    var list = $("#cards", task);
    if (list && window.Sortable) {
      var before = null;
      window.Sortable.create(list, {
        handle: ".drag-handle", animation: 120, forceFallback: true, // pointer events: same on mouse, touch, tests
        onStart: function () { before = snapshot(); },
        onEnd: function (evt) { afterMove(evt.item, before || snapshot()); }
      });
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!state) { return; }
    if (document.visibilityState === "visible") { state.visibleSince = Date.now(); }
    else if (state.visibleSince) { state.active += Date.now() - state.visibleSince; state.visibleSince = null; }
  });

  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t instanceof HTMLSelectElement && t.classList.contains("rank")) { sortBySelects(t.closest(".card")); }
    else if (t.closest && t.closest("#task-form")) { touch(); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-action]") : null;
    if (!button) { return; }
    var action = button.dataset.action;
    if (action === "raw") {
      var card = button.closest(".card");
      card.querySelector(".rendered").classList.toggle("hidden");
      card.querySelector(".raw").classList.toggle("hidden");
    } else if (action === "layout") {
      var list = $("#cards");
      var side = list.classList.contains("layout-side-by-side");
      list.classList.toggle("layout-side-by-side", !side);
      list.classList.toggle("layout-stacked", side);
    } else if (action === "help") {
      $("#help-dialog").showModal();
    } else if (action === "copy") {
      var source = document.getElementById(button.dataset.copyTarget);
      if (source && navigator.clipboard) { navigator.clipboard.writeText(source.value); button.textContent = "Copied"; }
    } else if (action === "not-rankable") {
      if (state) { state.notRankable = true; }
    }
  });

  // Fill the timing fields before htmx (or a plain submit) collects the form.
  document.addEventListener("submit", function (event) {
    if (event.target.id === "task-form") { fillTimes(event.target); }
  }, true);

  // Guard: submitting the untouched initial order asks first ("Not rankable" is deliberate and needs no guard).
  document.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    if (!state || !elt || elt.id !== "task-form") { return; }
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    var notRankable = (submitter && submitter.name === "not_rankable") || state.notRankable;
    state.notRankable = false;
    if (state.touched || notRankable) { return; }
    event.preventDefault();
    if (window.confirm("You have not changed the initial order. Submit it as your ranking?")) {
      event.detail.issueRequest(true);
    }
  });

  // Errors come back as fragments too: a 400/422 fills the error box, a 409 replaces the task with the echo.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
    else if (status === 400 || status === 422) {
      event.detail.shouldSwap = true; event.detail.isError = false;
      event.detail.target = document.getElementById("task-error");
    }
  });

  document.addEventListener("keydown", function (event) {
    if (!$("#task-form") || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement || target.isContentEditable;
    if (typing || ($("#help-dialog") && $("#help-dialog").open)) { return; }
    var card = target.closest ? target.closest("#cards > .card") : null;
    var list = cards(), i = card ? list.indexOf(card) : -1, key = event.key;
    if (key === "ArrowDown" || key === "ArrowRight" || key === "ArrowUp" || key === "ArrowLeft") {
      var step = (key === "ArrowDown" || key === "ArrowRight") ? 1 : -1;
      var next = list[Math.max(0, Math.min(list.length - 1, i < 0 ? 0 : i + step))];
      if (next) { next.focus(); event.preventDefault(); }
    } else if (/^[1-9]$/.test(key) && card) {
      moveTo(card, parseInt(key, 10)); event.preventDefault();
    } else if (key === "t" && card) {
      toggleTie(card); event.preventDefault();
    } else if (key === "Enter" && (card || target === document.body)) {
      $("#task-form").requestSubmit(); event.preventDefault();
    } else if (key === "s") {
      var skip = $("#skip");
      if (skip) { skip.open = true; skip.querySelector('input[name="reason"]').focus(); event.preventDefault(); }
    } else if (key === "?") {
      $("#help-dialog").showModal(); event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:afterSettle", init);
  if (document.readyState !== "loading") { init(); }
})();
