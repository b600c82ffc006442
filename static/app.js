/* buildhook: small progressive JavaScript, no build step. Every page works without it;
 * with it, logs stream live, lists refresh themselves, and buttons post with the CSRF token. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.content : "";

  function announce(message) {
    var box = document.getElementById("messages");
    if (!box) return;
    var line = document.createElement("p");
    line.className = "flash";
    line.textContent = message;
    box.replaceChildren(line);
  }

  function notice(message) {
    var box = document.getElementById("notice");
    if (!box) { window.alert(message); return; }
    box.textContent = message;
    box.hidden = false;
    window.scrollTo({ top: 0, behavior: "smooth" });
  }

  // --- durations and ages, kept current --------------------------------------------------
  function duration(seconds) {
    if (seconds < 10) return seconds.toFixed(1) + " s";
    var whole = Math.round(seconds);
    if (whole < 60) return whole + " s";
    var minutes = Math.floor(whole / 60), secs = whole % 60;
    if (minutes < 60) return minutes + " min " + (secs < 10 ? "0" : "") + secs + " s";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    return hours + " h " + (minutes < 10 ? "0" : "") + minutes + " min";
  }

  function ago(date) {
    var seconds = (Date.now() - date.getTime()) / 1000;
    var future = seconds < 0, text;
    seconds = Math.abs(seconds);
    if (seconds < 5) return "just now";
    if (seconds < 45) text = Math.floor(seconds) + " s";
    else if (seconds < 3600) text = Math.max(1, Math.round(seconds / 60)) + " min";
    else if (seconds < 86400) text = Math.round(seconds / 3600) + " h";
    else if (seconds < 30 * 86400) text = Math.round(seconds / 86400) + " d";
    else return date.toISOString().slice(0, 10);
    return future ? "in " + text : text + " ago";
  }

  function tickSince() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var start = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(start)) el.textContent = duration(Math.max(0, (now - start) / 1000));
    });
  }

  function tickAges() {
    document.querySelectorAll("time[data-age]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) el.textContent = ago(when);
    });
  }
  tickSince();
  setInterval(tickSince, 1000);
  setInterval(tickAges, 30000);

  // --- copy buttons ------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  // --- forms that change something (Rebuild, Cancel, Redeliver, Disable, Delete) -----------
  // Without JavaScript each is a plain form: the server asks for a confirmation on a page of its
  // own and answers with a redirect. Here confirm() asks instead, and a form with data-api is
  // sent to the JSON API so the page stays (the live log keeps streaming).
  document.querySelectorAll("[data-copy][hidden]").forEach(function (button) { button.hidden = false; });

  function confirmed(form) {
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "confirmed";
    input.value = "1";
    form.appendChild(input);
  }

  function sendToApi(form) {
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.classList.add("busy");
    fetch(form.getAttribute("data-api"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": CSRF, "Accept": "application/json" }
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!response.ok) {
          throw new Error((body && body.error) || ("the server answered " + response.status));
        }
        var then = form.getAttribute("data-then");
        if (then === "build") {
          var build = body && (body.build || (body.builds && body.builds[0]) || body);
          if (build && build.id) { window.location.assign("/builds/" + build.id); return; }
          window.location.reload();
        } else if (then === "refresh") {
          refreshLive();
        } else {
          window.location.reload();
        }
      });
    }).catch(function (error) {
      notice(error.message);
    }).finally(function () {
      button.disabled = false;
      button.classList.remove("busy");
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-copy], [data-folds]") : null;
    if (!target) return;
    if (target.hasAttribute("data-copy")) {
      event.preventDefault();
      copyText(target.getAttribute("data-copy")).then(function () {
        var label = target.textContent;
        target.textContent = "Copied";
        target.classList.add("copied");
        announce("Copied to the clipboard.");
        setTimeout(function () { target.textContent = label; target.classList.remove("copied"); }, 1500);
      }, function () { notice("Could not copy: select the text and copy it by hand."); });
    } else if (target.hasAttribute("data-folds")) {
      var open = target.getAttribute("data-folds") === "open";
      document.querySelectorAll("#log details.fold").forEach(function (fold) { fold.open = open; });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.getAttribute) return;
    var question = form.getAttribute("data-confirm");
    if (question) {
      if (!window.confirm(question)) { event.preventDefault(); return; }
      confirmed(form);
    }
    if (form.hasAttribute("data-api")) {
      event.preventDefault();
      sendToApi(form);
    }
  });

  // --- parts of the page that follow the build's state ------------------------------------
  var refreshing = null;
  function refreshLive() {
    if (refreshing) return refreshing;
    refreshing = fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var replacement = fresh.getElementById(old.id);
          if (replacement) old.replaceWith(document.importNode(replacement, true));
        });
        document.title = fresh.title;
        tickSince();
      })
      .catch(function () { /* the next state change tries again */ })
      .finally(function () { refreshing = null; });
    return refreshing;
  }

  // --- the history refreshes itself ----------------------------------------------------------
  var historyBox = document.querySelector("[data-refresh]");
  if (historyBox) {
    setInterval(function () {
      if (document.hidden) return;
      fetch(historyBox.getAttribute("data-refresh"), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var body = new DOMParser().parseFromString("<table>" + html + "</table>", "text/html").querySelector("tbody");
          var table = historyBox.querySelector("table");
          var current = table && table.querySelector("tbody");
          if (!body || !current) return;
          if (current.innerHTML.trim() !== body.innerHTML.trim()) {
            current.replaceWith(document.importNode(body, true));
            var any = !!body.querySelector("tr");
            table.hidden = !any;
            var empty = historyBox.querySelector(".empty");
            if (empty) empty.hidden = any;
            tickSince();
          }
        })
        .catch(function () { /* try again at the next tick */ });
    }, 5000);
  }

  // the build page's log (static/log.js) uses these
  window.buildhook = { refreshLive: refreshLive, announce: announce, notice: notice, tickSince: tickSince };
})();
