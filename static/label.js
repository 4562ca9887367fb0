// The ranking page: type-the-order keyboard, drag (SortableJS, by the handle), rank selects that move the
// others (ties only on purpose), a draft per assignment in localStorage, timers, heartbeats, the untouched-
// order guard, errors on the cards, and the "saved" announcement. No inline code (CSP); re-initialised
// after every htmx swap of #task. Pairwise projects (data-mode="pairwise") show two answers and a 7-point
// preference scale instead (keys 1–7); the edit page (data-edit) reopens a submitted ranking in its order.
//
// The ranking lives in the DOM: the order of #cards > .card, and the class "tied" on a card that shares
// the rank of the card above it. Every change goes through commit(), which renumbers the selects, keeps
// the draft and announces the change.
(function () {
  "use strict";
  var LETTERS = "ABCDEFGHI";
  var DRAFT = "prefloop:draft:";
  var DRAFT_DAYS = 7;
  var state = null; // per task: {id, start, active, visibleSince, ordered, typed, base, timer, beat}

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function cards() { return $$("#cards > .card"); }
  function byLetter(letter) { return $('#cards > .card[data-letter="' + letter + '"]'); }
  function csrf() { var m = $('meta[name="csrf-token"]'); return m ? m.getAttribute("content") : ""; }
  function store() { try { return window.localStorage; } catch (e) { return null; } }
  // The draft and state key of a task page: the edit page of a ranking keeps its own draft.
  function taskId(task) { return task && task.dataset.assignment ? (task.dataset.edit ? "edit-" : "") + task.dataset.assignment : ""; }

  function announce(text) {
    var live = $("#announce");
    if (!live) { return; }
    live.textContent = "";
    live.textContent = text; // cleared first so the same words are announced again
  }

  // ---- the ranking model -------------------------------------------------------------------------
  function groups() {
    var out = [];
    cards().forEach(function (card, i) {
      if (i > 0 && card.classList.contains("tied")) { out[out.length - 1].push(card); } else { out.push([card]); }
    });
    return out;
  }
  function rankOf(card) { return parseInt(card.querySelector("select.rank").value, 10); }
  function orderText() {
    return groups().map(function (g) { return g.map(function (c) { return c.dataset.letter; }).join("="); }).join(" ");
  }
  // Lay the cards out as `gs` (arrays of cards, best first; a group of several is a tie) and renumber.
  function layout(gs) {
    var list = $("#cards");
    gs.forEach(function (g) {
      g.forEach(function (card, j) { list.appendChild(card); card.classList.toggle("tied", j > 0); });
    });
    gs.forEach(function (g, rank) {
      g.forEach(function (card) {
        var select = card.querySelector("select.rank");
        if (select) { select.value = String(rank + 1); }
      });
    });
  }
  function commit(gs, message, fromTyping) {
    layout(gs);
    if (state) {
      state.ordered = true;
      if (!fromTyping) { state.typed = []; state.base = null; }
    }
    showTyped();
    saveDraft();
    if (message) { announce(message); }
  }
  function without(card) {
    return groups().map(function (g) { return g.filter(function (c) { return c !== card; }); })
      .filter(function (g) { return g.length; });
  }
  // Give `card` rank `rank`: it leaves its group and the others move to make room (never a tie).
  function setRank(card, rank) {
    var gs = without(card), at = Math.max(0, Math.min(rank - 1, gs.length));
    gs.splice(at, 0, [card]);
    commit(gs, "Answer " + card.dataset.letter + " moved to rank " + (at + 1) + ".");
  }
  function toggleTie(card) {
    var list = cards(), i = list.indexOf(card);
    if (i <= 0) { announce("Answer " + card.dataset.letter + " is first; nothing above to tie with."); return; }
    var untie = card.classList.contains("tied");
    card.classList.toggle("tied", !untie);
    var above = list[i - 1].dataset.letter;
    commit(groups(), untie ? "Answer " + card.dataset.letter + " no longer tied with " + above + "."
      : "Answer " + card.dataset.letter + " tied with " + above + " at rank " + rankOf(list[i - 1]) + ".");
  }
  // After a drag: the moved card stands alone; ties among the others survive only if still adjacent.
  function afterDrag(moved, before) {
    var gs = [], list = cards();
    list.forEach(function (card, i) {
      var prev = list[i - 1];
      var tied = i > 0 && card !== moved && prev !== moved && before.get(card) === before.get(prev);
      if (tied) { gs[gs.length - 1].push(card); } else { gs.push([card]); }
    });
    commit(gs, "Answer " + moved.dataset.letter + " moved to position " + (list.indexOf(moved) + 1) + ".");
  }

  // ---- typing the order: letters best first, "=" ties, Backspace undoes ---------------------------
  function typedGroups(tokens) {
    var out = [], join = false;
    tokens.forEach(function (t) {
      if (t === "=") { join = out.length > 0; return; }
      if (join) { out[out.length - 1].push(t); } else { out.push([t]); }
      join = false;
    });
    return out;
  }
  function applyTyped(message) {
    var typed = typedGroups(state.typed), seen = {};
    typed.forEach(function (g) { g.forEach(function (l) { seen[l] = true; }); });
    var rest = state.base.map(function (g) { return g.filter(function (l) { return !seen[l]; }); })
      .filter(function (g) { return g.length; });
    commit(typed.concat(rest).map(function (g) { return g.map(byLetter); }), message, true);
  }
  function typeLetter(letter) {
    if (!state.base) {
      state.typed = [];
      state.base = groups().map(function (g) { return g.map(function (c) { return c.dataset.letter; }); });
    }
    if (state.typed.indexOf(letter) >= 0) { announce(letter + " is already placed; Backspace undoes."); return; }
    var tie = state.typed.length && state.typed[state.typed.length - 1] === "=";
    state.typed.push(letter);
    applyTyped(null);
    announce(letter + (tie ? " tied at rank " : " at rank ") + rankOf(byLetter(letter)) + ".");
  }
  function typeEquals() {
    if (!state.base || !state.typed.length || state.typed[state.typed.length - 1] === "=") { return; }
    state.typed.push("=");
    showTyped();
    announce("Next letter ties with " + state.typed[state.typed.length - 2] + ".");
  }
  function typeBackspace() {
    if (!state.base || !state.typed.length) { return; }
    var gone = state.typed.pop();
    while (state.typed.length && state.typed[state.typed.length - 1] === "=") { state.typed.pop(); }
    if (!state.typed.length) {
      var base = state.base;
      state.base = null;
      commit(base.map(function (g) { return g.map(byLetter); }), "Typed order undone.");
      return;
    }
    applyTyped(gone === "=" ? "Tie undone." : gone + " taken back.");
  }
  function showTyped() {
    var box = $("[data-typed]");
    if (box) { box.textContent = state && state.typed.length ? "Typed: " + state.typed.join(" ") : ""; }
  }

  // ---- pairwise: one choice on the 7-point scale -------------------------------------------------
  function choose(key) {
    var radio = $('#task-form input[name="preference"][data-key="' + key + '"]');
    if (!radio) { return; }
    radio.checked = true;
    state.ordered = true;
    saveDraft();
    announce("Chosen: " + radio.parentNode.textContent.replace(/^\s*\d\s*/, "").trim() + ".");
  }

  // ---- the draft ---------------------------------------------------------------------------------
  function draftKey() { return state ? DRAFT + state.id : null; }
  function readDraft(id) {
    var s = store();
    if (!s) { return null; }
    try { return JSON.parse(s.getItem(DRAFT + id) || "null"); } catch (e) { return null; }
  }
  function saveDraft(extra) {
    var s = store(), form = $("#task-form");
    if (!s || !state || !form) { return; }
    var draft = { v: 1, savedAt: Date.now(), ordered: state.ordered, typed: state.typed, base: state.base,
      order: cards().map(function (c) { return c.dataset.letter; }),
      tied: cards().filter(function (c) { return c.classList.contains("tied"); }).map(function (c) { return c.dataset.letter; }),
      flags: {}, likert: {}, wallMs: Date.now() - state.start, activeMs: activeSeconds() * 1000,
      rationale: (form.querySelector('textarea[name="rationale"]') || {}).value || "",
      preference: (form.querySelector('input[name="preference"]:checked') || {}).value || null,
      demonstration: (form.querySelector('textarea[name="demonstration"]') || {}).value || "" };
    cards().forEach(function (card) {
      var l = card.dataset.letter;
      var ticked = $$('input[type="checkbox"]:checked', card).map(function (b) { return b.value; });
      if (ticked.length) { draft.flags[l] = ticked; }
      var likert = card.querySelector('select[name^="likert_"]');
      if (likert && likert.value) { draft.likert[l] = likert.value; }
    });
    if (extra) { Object.keys(extra).forEach(function (k) { draft[k] = extra[k]; }); }
    try { s.setItem(draftKey(), JSON.stringify(draft)); } catch (e) { /* storage full: the page still works */ }
    var note = $("[data-draft-state]");
    if (note) { note.textContent = "Draft kept in this browser"; }
  }
  function dropDraft(id) { var s = store(); if (s) { s.removeItem(DRAFT + id); } }
  function pruneDrafts() {
    var s = store();
    if (!s) { return; }
    var old = Date.now() - DRAFT_DAYS * 86400000;
    for (var i = s.length - 1; i >= 0; i--) {
      var key = s.key(i);
      if (key && key.indexOf(DRAFT) === 0) {
        var d = null;
        try { d = JSON.parse(s.getItem(key) || "null"); } catch (e) { d = null; }
        if (!d || !d.savedAt || d.savedAt < old) { s.removeItem(key); }
      }
    }
  }
  function restoreDraft(draft) {
    var form = $("#task-form");
    var known = draft.order.filter(function (l) { return byLetter(l); });
    if (known.length === cards().length && !state.pairwise) {
      var gs = [];
      known.forEach(function (l, i) {
        if (i > 0 && draft.tied.indexOf(l) >= 0) { gs[gs.length - 1].push(byLetter(l)); } else { gs.push([byLetter(l)]); }
      });
      layout(gs);
    }
    cards().forEach(function (card) {
      var l = card.dataset.letter, ticked = draft.flags[l] || [];
      $$('input[type="checkbox"]', card).forEach(function (b) { b.checked = ticked.indexOf(b.value) >= 0; });
      var likert = card.querySelector('select[name^="likert_"]');
      if (likert) { likert.value = draft.likert[l] || ""; }
    });
    var r = form.querySelector('textarea[name="rationale"]');
    if (r) { r.value = draft.rationale || ""; }
    var d = form.querySelector('textarea[name="demonstration"]');
    if (d) { d.value = draft.demonstration || ""; }
    $$('input[name="preference"]', form).forEach(function (radio) { radio.checked = radio.value === draft.preference; });
    state.ordered = !!draft.ordered;
    state.typed = draft.typed || [];
    state.base = draft.base || null;
    state.start = Date.now() - (draft.wallMs || 0);
    state.active = draft.activeMs || 0;
    showTyped();
    var note = $("[data-draft-state]");
    if (note) { note.textContent = "Draft restored"; }
  }

  // ---- per-card helpers --------------------------------------------------------------------------
  function refreshMeta(card) {
    var n = $$('input[type="checkbox"]:checked', card).length;
    var likert = card.querySelector('select[name^="likert_"]');
    if (likert && likert.value) { n += 1; }
    var count = card.querySelector("[data-meta-count]");
    if (count) { count.textContent = n ? n + " set" : ""; }
    if (n) { openMeta(card, true); }
  }
  function openMeta(card, open) {
    card.classList.toggle("meta-open", open);
    var button = card.querySelector('button[data-action="meta"]');
    if (button) { button.setAttribute("aria-expanded", open ? "true" : "false"); }
  }
  function refreshClamp(card) {
    var body = card.querySelector(".completion-body"), button = card.querySelector('button[data-action="expand"]');
    if (!body || !button) { return; }
    var expanded = card.classList.contains("expanded");
    button.hidden = !expanded && body.scrollHeight <= body.clientHeight + 2;
  }
  function markErrors() {
    var box = $("#submit-errors");
    cards().forEach(function (card) {
      card.classList.remove("invalid");
      var slot = card.querySelector("[data-card-error]");
      if (slot) { slot.textContent = ""; slot.hidden = true; }
    });
    if (!box) { return; }
    $$("li[data-letters]", box).forEach(function (item) {
      (item.dataset.letters || "").split(" ").filter(Boolean).forEach(function (letter) {
        var card = byLetter(letter);
        if (!card) { return; }
        card.classList.add("invalid");
        if (item.dataset.field === "flags" || item.dataset.field === "likert") { openMeta(card, true); }
        var slot = card.querySelector("[data-card-error]");
        if (slot) {
          var field = { flags: "Flags missing", likert: "Quality missing", ranks: "Rank missing" }[item.dataset.field] || "Needs attention";
          slot.textContent = slot.textContent ? slot.textContent + "; " + field : field;
          slot.hidden = false;
        }
      });
    });
  }

  // ---- layout choice, remembered per user in this browser ----------------------------------------
  function layoutKey() {
    var page = $(".label-page");
    return "prefloop:layout:" + (page ? page.dataset.user || "" : "");
  }
  function setLayout(side, remember) {
    var list = $("#cards"), button = $('button[data-action="layout"]');
    if (!list) { return; }
    list.classList.toggle("layout-side-by-side", side);
    list.classList.toggle("layout-stacked", !side);
    if (button) { button.setAttribute("aria-pressed", side ? "true" : "false"); }
    var s = store();
    if (remember && s) { s.setItem(layoutKey(), side ? "side-by-side" : "stacked"); }
    cards().forEach(refreshClamp);
  }

  // ---- timers and heartbeat ----------------------------------------------------------------------
  function fmt(seconds) {
    var s = Math.floor(seconds), m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }
  function activeSeconds() {
    if (!state) { return 0; }
    var extra = state.visibleSince ? (Date.now() - state.visibleSince) : 0;
    return (state.active + extra) / 1000;
  }
  function fillTimes(form) {
    if (!state) { return; }
    form.querySelector('input[name="wall_seconds"]').value = ((Date.now() - state.start) / 1000).toFixed(1);
    form.querySelector('input[name="active_seconds"]').value = activeSeconds().toFixed(1);
  }
  function heartbeat(task) {
    // An idle hidden tab lets the lease run out; the edit page of a submitted ranking holds no lease.
    if (document.visibilityState !== "visible" || !task.dataset.heartbeatUrl) { return; }
    fetch(task.dataset.heartbeatUrl, { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 409 || r.status === 404) {
          var box = $("#task-error");
          if (box) { box.textContent = "Your lease on this task ended; submitting may be refused, your input will be shown back."; }
        }
      })
      .catch(function () { /* offline: the next beat retries */ });
  }

  function stop() {
    if (state) { clearInterval(state.timer); clearInterval(state.beat); state = null; }
  }

  function init() {
    var task = $("#task");
    if (task && task.dataset.saved && !task.dataset.announced) {
      task.dataset.announced = "1";
      announce(task.dataset.saved);
    }
    if (!task || !task.dataset.assignment) { stop(); return; }
    markErrors();
    if (state && state.id === taskId(task) && task.dataset.ready) { return; }
    var swapped = !!state && state.id !== taskId(task); // the next task replaced the last one
    stop();
    task.dataset.ready = "1";
    pruneDrafts();
    state = { id: taskId(task), start: Date.now(), active: 0, typed: [], base: null,
      visibleSince: document.visibilityState === "visible" ? Date.now() : null,
      pairwise: task.dataset.mode === "pairwise",
      ordered: !!task.dataset.edit }; // the edit page opens in the stored order: keeping it is a choice
    var s = store(), remembered = s ? s.getItem(layoutKey()) : null;
    if (remembered && !state.pairwise) { setLayout(remembered === "side-by-side", false); }
    var draft = readDraft(state.id);
    if (draft && draft.order) { restoreDraft(draft); }
    cards().forEach(function (card) { refreshMeta(card); refreshClamp(card); });
    // Code blocks scroll sideways inside their answer; keyboard users must be able to reach them.
    $$(".completion-body pre, .prompt-body pre", task).forEach(function (pre) {
      if (!pre.querySelector("pre")) { pre.tabIndex = 0; } // the innermost one is what scrolls
    });
    var clock = $("[data-timer]", task);
    state.timer = setInterval(function () { if (clock && state) { clock.textContent = fmt((Date.now() - state.start) / 1000); } }, 1000);
    var every = parseInt(task.dataset.heartbeatSeconds || "60", 10) * 1000;
    state.beat = setInterval(function () { heartbeat(task); }, every);
    var list = $("#cards", task);
    if (list && window.Sortable && $(".drag-handle", list)) {
      var before = null;
      window.Sortable.create(list, {
        handle: ".drag-handle", animation: 120, forceFallback: true, // pointer events: same on mouse, touch, tests
        onStart: function () {
          before = new Map();
          cards().forEach(function (c) { before.set(c, rankOf(c)); });
        },
        onEnd: function (evt) { afterDrag(evt.item, before || new Map()); }
      });
    }
    if (swapped) { // the next task: start at its top, focus on it, so typing letters works at once
      window.scrollTo(0, 0);
      task.focus({ preventScroll: true });
    }
    if (draft && draft.resume) { // signed in again after the session ended: send what was kept
      saveDraft({ resume: false });
      announce("Draft restored after sign-in; submitting it.");
      setTimeout(function () { var f = $("#task-form"); if (f) { f.requestSubmit(); } }, 0);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!state) { return; }
    if (document.visibilityState === "visible") { state.visibleSince = Date.now(); }
    else if (state.visibleSince) { state.active += Date.now() - state.visibleSince; state.visibleSince = null; }
  });

  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t instanceof HTMLSelectElement && t.classList.contains("rank")) {
      setRank(t.closest(".card"), parseInt(t.value, 10));
      t.focus();
    } else if (t.closest && t.closest("#task-form")) {
      var card = t.closest(".card");
      if (card) { refreshMeta(card); }
      saveDraft();
    }
  });
  document.addEventListener("input", function (event) {
    if (event.target instanceof HTMLTextAreaElement && event.target.closest("#task-form")) { saveDraft(); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-action]") : null;
    if (!button) { return; }
    var action = button.dataset.action, card = button.closest(".card");
    if (action === "raw") {
      card.querySelector(".rendered").classList.toggle("hidden");
      card.querySelector(".raw").classList.toggle("hidden");
      refreshClamp(card);
    } else if (action === "expand") {
      var open = !card.classList.contains("expanded");
      card.classList.toggle("expanded", open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
      button.textContent = open ? "Show less" : "Show all";
      refreshClamp(card);
    } else if (action === "meta") {
      openMeta(card, !card.classList.contains("meta-open"));
    } else if (action === "tie") {
      toggleTie(card);
    } else if (action === "layout") {
      setLayout(!$("#cards").classList.contains("layout-side-by-side"), true);
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

  // Guard: submitting the order as shown, with no ranking action at all, asks first. Flags, quality and
  // rationale do not count: only the order does. "Not rankable" is deliberate and needs no guard.
  document.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    if (!state || !elt || elt.id !== "task-form") { return; }
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    var notRankable = (submitter && submitter.name === "not_rankable") || state.notRankable;
    state.notRankable = false;
    if (state.ordered || notRankable || state.pairwise) { return; } // pairwise: the server asks for a choice
    event.preventDefault();
    if (window.confirm("You have not changed the initial order. Submit it as your ranking?")) {
      event.detail.issueRequest(true);
    }
  });

  // The session ended: the server answers with HX-Redirect to the sign-in page. Stay, keep the draft,
  // say so, and offer sign-in; coming back to the task restores the draft and submits it.
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    var xhr = event.detail.xhr, elt = event.detail.elt;
    var to = xhr.getResponseHeader("HX-Redirect") || "";
    if (!state || !elt || elt.id !== "task-form" || to.indexOf("/login") !== 0) { return; }
    event.preventDefault();
    saveDraft({ resume: true });
    var box = $("#submit-errors"), task = $("#task");
    if (!box) { return; }
    box.textContent = "";
    var p = document.createElement("p");
    p.appendChild(document.createTextNode("Your session has ended, so nothing was saved yet. Your ranking is kept in this browser: "));
    var link = document.createElement("a");
    link.href = (task && task.dataset.loginUrl) || to;
    link.textContent = "sign in again";
    link.setAttribute("data-testid", "relogin");
    p.appendChild(link);
    p.appendChild(document.createTextNode(" and it is submitted for you."));
    box.appendChild(p);
    announce("Your session has ended; your ranking is kept. Sign in again to submit it.");
  });

  // Errors come back as fragments too: a 400/422 fills the box next to Submit, a 409 replaces the task
  // with the echo.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status, source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (source && source.id === "task-form") {
      var task = $("#task");
      if ((status === 200 || status === 409) && task) { dropDraft(taskId(task)); } // stored, or gone
      if (status === 400 || status === 422) { announce("Not saved: see the problems next to Submit."); }
    }
    if (status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
    else if (status === 400 || status === 422) {
      event.detail.shouldSwap = true; event.detail.isError = false;
      event.detail.target = document.getElementById("submit-errors");
    }
  });
  document.addEventListener("keydown", function (event) {
    var current = $("#task");
    if (current && current.dataset.assignment && (!state || state.id !== taskId(current))) {
      init(); // a key pressed between the swap and htmx's settle belongs to the new task
    }
    if (!$("#task-form") || !state || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = (target instanceof HTMLInputElement && target.type !== "radio") || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement || target.isContentEditable;
    if (typing || ($("#help-dialog") && $("#help-dialog").open)) { return; }
    var card = target.closest ? target.closest("#cards > .card") : null;
    var list = cards(), i = card ? list.indexOf(card) : -1, key = event.key;
    var control = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement ||
      (target.tagName === "SUMMARY");
    var letter = key.length === 1 ? key.toUpperCase() : "";
    if (state.pairwise) { // two answers, one choice: 1–7 choose, Enter submits; arrows stay the radios' own
      if (/^[1-7]$/.test(key)) { choose(key); event.preventDefault(); }
      else if (key === "Enter" && !control) { $("#task-form").requestSubmit(); event.preventDefault(); }
      else if (key === "s" && $("#skip")) { $("#skip").open = true; $('#skip input[name="reason"]').focus(); event.preventDefault(); }
      else if (key === "?") { $("#help-dialog").showModal(); event.preventDefault(); }
      return;
    }
    if (target instanceof HTMLInputElement) { return; } // a radio outside pairwise mode: leave its keys alone
    if (letter && LETTERS.indexOf(letter) >= 0 && LETTERS.indexOf(letter) < list.length) {
      typeLetter(letter); event.preventDefault();
    } else if (key === "=") {
      typeEquals(); event.preventDefault();
    } else if (key === "Backspace") {
      if (state.base) { typeBackspace(); event.preventDefault(); }
    } else if (key === "ArrowDown" || key === "ArrowRight" || key === "ArrowUp" || key === "ArrowLeft") {
      var step = (key === "ArrowDown" || key === "ArrowRight") ? 1 : -1;
      var next = list[Math.max(0, Math.min(list.length - 1, i < 0 ? 0 : i + step))];
      if (next) { next.focus(); event.preventDefault(); }
    } else if (/^[1-9]$/.test(key) && card) {
      setRank(card, parseInt(key, 10)); card.focus(); event.preventDefault();
    } else if (key === "t" && card) {
      toggleTie(card); event.preventDefault();
    } else if (key === "Enter" && !control) {
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
  window.addEventListener("resize", function () { cards().forEach(refreshClamp); });
  // Exposed for the browser tests and for debugging: the current order as typed ("D A=G B ...").
  window.prefloopRanking = { order: orderText };
})();
