/* buildhook: the build page's log. Without JavaScript the server renders it (colours, line
 * links, ?q= search); with it, lines stream live, the search filters in place, a link to a line
 * opens its fold, and a finished failed log opens at its first error. */
(function () {
  "use strict";

  var log = document.getElementById("log");
  if (!log) return;
  var page = window.buildhook || { refreshLive: function () {}, announce: function () {}, tickSince: function () {} };

  // The same rules as builder/history.py (fold_log, is_error_line), read without colour codes.
  var STEP_START = /^(Step \d+\/\d+ : |#\d+ \[[^\]]*\d+\/\d+\] )/;
  var PUSH_START = /^Pushing \S+/;
  var FOLD_END = /^(Successfully built |Successfully tagged |Layer cache: |Built |Pushed |Building |Succeeded: |FAILED: |Cancelled|Transient failure|A cancel request came)/;
  var ERROR_LINE = /\bERROR\b|\bFAILED\b|returned a non-zero code|^error: |^fatal: /;
  var ESCAPES = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]/g;

  function plain(text) { return text.indexOf("\x1b") < 0 ? text : text.replace(ESCAPES, ""); }

  // --- colours: SGR codes to spans with ansi2html's class names (webhooks/log_render.py) -------
  function sgr(state, params) {
    var codes = params === "" ? [0] : params.split(";").map(function (p) { return parseInt(p, 10) || 0; });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { state.fg = state.bg = null; state.attrs = {}; }
      else if (c === 38 || c === 48) { i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0; }
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
      else if (c === 39) state.fg = null;
      else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) state.bg = c;
      else if (c === 49) state.bg = null;
      else if (c >= 1 && c <= 9) state.attrs[c] = true;
      else if (c === 22) { delete state.attrs[1]; delete state.attrs[2]; }
      else if (c >= 23 && c <= 29) delete state.attrs[c - 20];
    }
  }

  function classes(state) {
    var names = Object.keys(state.attrs).map(function (a) { return "ansi" + a; });
    if (state.fg) names.push("ansi" + state.fg);
    if (state.bg) names.push("ansi" + state.bg);
    return names.join(" ");
  }

  function coloured(target, text) {
    if (text.indexOf("\x1b") < 0) { target.textContent = text; return; }
    var state = { fg: null, bg: null, attrs: {} };
    var pattern = /\x1b\[([0-9;]*)m|\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]/g;
    var at = 0, found;
    function add(part) {
      if (!part) return;
      var names = classes(state);
      if (!names) { target.appendChild(document.createTextNode(part)); return; }
      var span = document.createElement("span");
      span.className = names;
      span.textContent = part;
      target.appendChild(span);
    }
    while ((found = pattern.exec(text)) !== null) {
      add(text.slice(at, found.index));
      if (found[1] !== undefined) sgr(state, found[1]);
      at = pattern.lastIndex;
    }
    add(text.slice(at));
  }

  function clock(date) { return date.toISOString().slice(11, 19); }

  // --- lines as they arrive -------------------------------------------------------------------
  var count = document.getElementById("log-count");
  var status = document.getElementById("log-status");
  var lastSeq = parseInt(log.getAttribute("data-last") || "0", 10) || 0;
  var lastChild = log.lastElementChild;
  var fold = lastChild && lastChild.matches("details.fold") ? lastChild : null;
  var pending = [];
  var scheduled = false;

  function makeLine(seq, text, head) {
    var line = document.createElement("div");
    line.className = "line new" + (ERROR_LINE.test(plain(text)) ? " err" : "");
    line.id = "L" + seq;
    line.setAttribute("data-seq", String(seq));
    var link = document.createElement(head ? "span" : "a");  // no link inside a fold's summary
    link.className = "ln";
    if (!head) {
      link.href = "#L" + seq;
      link.setAttribute("aria-label", "Line " + seq);
    }
    link.textContent = String(seq);
    var now = new Date();
    var time = document.createElement("time");
    time.className = "ts";
    time.setAttribute("datetime", now.toISOString());
    time.textContent = clock(now);
    var body = document.createElement("span");
    body.className = "text";
    coloured(body, text);
    line.append(link, time, body);
    return line;
  }

  function foldCount(details) {
    var badge = details.querySelector(":scope > summary .fold-count");
    if (badge) badge.textContent = String(details.querySelectorAll(":scope > .line").length);
  }

  function append(seq, text) {
    var empty = log.querySelector(".log-empty");
    if (empty) empty.remove();
    var words = plain(text);
    if (STEP_START.test(words) || PUSH_START.test(words)) {
      if (fold && !fold.classList.contains("fold-error")) fold.open = false;  // the finished step folds away
      fold = document.createElement("details");
      fold.className = "fold";
      fold.open = true;
      var summary = document.createElement("summary");
      summary.appendChild(makeLine(seq, text, true));
      var badge = document.createElement("span");
      badge.className = "fold-count";
      badge.textContent = "0";
      summary.appendChild(badge);
      fold.appendChild(summary);
      log.appendChild(fold);
      return;
    }
    if (fold && FOLD_END.test(words)) {
      if (!fold.classList.contains("fold-error")) fold.open = false;
      fold = null;
    }
    var line = makeLine(seq, text);
    if (fold) {
      fold.appendChild(line);
      if (line.classList.contains("err")) { fold.classList.add("fold-error"); fold.open = true; }
      foldCount(fold);
    } else {
      log.appendChild(line);
    }
    if (search && search.value) filter();
  }

  function flush() {
    scheduled = false;
    if (!pending.length) return;
    var follow = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    pending.forEach(function (item) { append(item[0], item[1]); });
    pending = [];
    if (count) count.textContent = String(log.querySelectorAll(".line").length);
    if (follow) log.scrollTop = log.scrollHeight;
  }

  function setStatus(text, live) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("live", !!live);
  }

  // --- search in place --------------------------------------------------------------------------
  var search = document.getElementById("log-search");
  var matches = document.getElementById("log-matches");
  function filter() {
    var wanted = search.value.trim().toLowerCase();
    var shown = 0, total = 0;
    log.querySelectorAll(".line").forEach(function (line) {
      total++;
      var text = line.querySelector(".text");
      var hit = !wanted || (text && text.textContent.toLowerCase().indexOf(wanted) >= 0);
      line.classList.toggle("miss", !hit);
      if (hit) shown++;
    });
    log.querySelectorAll("details.fold").forEach(function (details) {
      if (wanted) details.open = !!details.querySelector(".line:not(.miss)");
      details.classList.toggle("miss", !!wanted && !details.querySelector(".line:not(.miss)"));
    });
    if (matches) matches.textContent = wanted ? shown + " of " + total + " lines" : "";
  }
  if (search && !new URLSearchParams(window.location.search).get("q")) {
    search.addEventListener("input", filter);
    search.form.addEventListener("submit", function (event) { event.preventDefault(); filter(); });
  }

  // --- a line's link; a failed log opens at its first error -------------------------------------
  function reveal(line, center) {
    for (var node = line.parentElement; node && node !== log; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    var top = line.getBoundingClientRect().top - log.getBoundingClientRect().top + log.scrollTop;
    log.scrollTop = Math.max(0, top - (center ? log.clientHeight / 3 : 0));
  }

  function showTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var line = /^L\d+$/.test(id) ? document.getElementById(id) : null;
    if (!line) return false;
    reveal(line, true);
    line.scrollIntoView({ block: "center" });
    return true;
  }
  window.addEventListener("hashchange", showTarget);
  if (!showTarget()) {
    var firstError = log.getAttribute("data-first-error");
    var failing = firstError && document.getElementById("L" + firstError);
    if (failing) reveal(failing, true);  // the log box scrolls; the page stays at the top
  }

  // --- live ---------------------------------------------------------------------------------------
  var streamUrl = log.getAttribute("data-stream");
  if (!streamUrl || !window.EventSource) return;
  log.scrollTop = log.scrollHeight;
  var currentState = null;
  var heading = document.querySelector("#build-head .pill");
  if (heading) currentState = heading.getAttribute("data-state");
  var source = new EventSource(streamUrl + (streamUrl.indexOf("?") < 0 ? "?" : "&") + "after=" + lastSeq);
  setStatus("live", true);
  source.onopen = function () { setStatus("live", true); };
  source.onmessage = function (event) {
    var seq = parseInt(event.lastEventId, 10);
    if (!(seq > lastSeq)) return;  // already shown (a reconnect overlaps)
    lastSeq = seq;
    pending.push([seq, event.data]);
    if (!scheduled) { scheduled = true; window.requestAnimationFrame(flush); }
  };
  source.addEventListener("state", function (event) {
    var state = JSON.parse(event.data).state;
    if (state !== currentState) {
      if (currentState !== null) page.announce("The build is " + state + ".");
      currentState = state;
      page.refreshLive();
    }
  });
  source.addEventListener("end", function (event) {
    source.close();
    flush();
    var state = JSON.parse(event.data).state;
    setStatus(state ? "finished: " + state : "", false);
    page.refreshLive();
  });
  source.onerror = function () {
    if (source.readyState !== EventSource.CLOSED) setStatus("reconnecting…", false);
  };
})();
