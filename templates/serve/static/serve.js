/* byod serve: progressive enhancement for the settings pages and the dashboard.
   Every page works without this file; with it, tests and saves happen in place, job stages
   update live (Server-Sent Events, polling as the fallback), the key can be shown, the
   disconnect choices open as a dialog, and the dashboard filters and polls. No network
   beyond this origin. */
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  /* -- the deploy key: show / hide ---------------------------------------------------- */
  $all("button.toggle-key").forEach(function (b) {
    var input = document.getElementById(b.getAttribute("aria-controls"));
    if (!input) { return; }
    b.hidden = false;
    b.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      b.setAttribute("aria-pressed", show ? "true" : "false");
      b.textContent = show ? "Hide" : "Show";
      b.setAttribute("aria-label", show ? "Hide the deploy key" : "Show the deploy key");
    });
    b.setAttribute("aria-label", "Show the deploy key");
  });

  /* -- the URL: an https:// hint while typing (the server checks again) --------------- */
  function urlProblem(value, allowLoopback) {
    var v = (value || "").trim();
    if (!v) { return "Enter your deployment URL."; }
    if (/^https:\/\/[^\s\/?#]+/i.test(v)) { return ""; }
    if (allowLoopback && /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/i.test(v)) { return ""; }
    return "The deployment URL must start with https:// (copy it from your deployment's settings).";
  }
  function setFieldError(form, name, message) {
    var input = form.querySelector("[name='" + name + "']");
    var box = form.querySelector("#" + name + "-error");
    if (!input || !box) { return; }
    box.textContent = message || "";
    box.hidden = !message;
    if (message) { input.setAttribute("aria-invalid", "true"); }
    else { input.removeAttribute("aria-invalid"); }
    var ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (x) {
      return x && x !== box.id;
    });
    if (message) { ids.push(box.id); }
    input.setAttribute("aria-describedby", ids.join(" "));
  }

  $all("form.credentials").forEach(function (form) {
    var url = form.querySelector("[name=url]");
    var key = form.querySelector("[name=deploy_key]");
    var allow = form.getAttribute("data-allow-loopback") === "true";
    var result = form.querySelector("#test-result");
    var testButton = form.querySelector("#test-button");
    url.addEventListener("blur", function () {
      if (url.value) { setFieldError(form, "url", urlProblem(url.value, allow)); }
    });
    url.addEventListener("input", function () {
      if (url.getAttribute("aria-invalid") === "true") { setFieldError(form, "url", urlProblem(url.value, allow)); }
    });
    function clientCheck() {
      var bad = urlProblem(url.value, allow);
      setFieldError(form, "url", bad);
      setFieldError(form, "deploy_key", key.value.trim() ? "" : "Enter your deploy key.");
      if (bad) { url.focus(); return false; }
      if (!key.value.trim()) { key.focus(); return false; }
      return true;
    }
    function showResult(ok, message) {
      result.innerHTML = "";
      var box = document.createElement("div");
      box.className = "result " + (ok ? "ok" : "bad");
      var badge = document.createElement("span");
      badge.className = "badge tone-" + (ok ? "ok" : "bad");
      badge.textContent = ok ? "Connection works" : "Connection failed";
      var msg = document.createElement("span");
      msg.className = "msg";
      msg.textContent = " " + message;
      box.appendChild(badge);
      box.appendChild(msg);
      result.appendChild(box);
    }
    testButton.addEventListener("click", function (ev) {
      if (!window.fetch || !window.FormData) { return; }
      ev.preventDefault();
      if (!clientCheck()) { return; }
      testButton.disabled = true;
      result.innerHTML = '<div class="result"><span class="badge tone-busy">Testing…</span></div>';
      fetch(form.getAttribute("data-test-url"), {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: {"Accept": "application/json"}
      }).then(function (r) {
        return r.json().then(function (body) { return {status: r.status, body: body}; });
      }).then(function (res) {
        var b = res.body || {};
        var errs = b.errors || {};
        setFieldError(form, "url", errs.url || "");
        setFieldError(form, "deploy_key", errs.deploy_key || "");
        showResult(!!b.ok, b.message || (res.status === 429 ? "Too many tests; wait a minute." : "The test did not complete."));
      }).catch(function () {
        showResult(false, "The test did not complete: the app did not answer.");
      }).then(function () { testButton.disabled = false; });
    });
    form.addEventListener("submit", function (ev) {
      var submitter = ev.submitter;
      if (submitter && submitter.id === "test-button") { return; }
      if (!clientCheck()) { ev.preventDefault(); }
    });
  });

  /* -- after a refused form, the first field at fault has the focus ------------------- */
  var invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) {
    var details = invalid.closest("details");
    if (details) { details.open = true; }
    invalid.focus();
  }

  /* -- a job's stages, live ------------------------------------------------------------ */
  function renderJob(panel, job) {
    var list = $("#job-stages", panel);
    if (list && job.stages) {
      list.innerHTML = "";
      job.stages.forEach(function (s) {
        var li = document.createElement("li");
        li.setAttribute("data-state", s.state);
        li.setAttribute("data-stage", s.name);
        var label = document.createElement("span");
        label.textContent = s.label;
        li.appendChild(label);
        if (s.detail) {
          var d = document.createElement("span");
          d.className = "muted";
          d.textContent = " — " + s.detail;
          li.appendChild(d);
        }
        var st = document.createElement("span");
        st.className = "sr-state";
        st.textContent = " (" + s.state + ")";
        li.appendChild(st);
        list.appendChild(li);
      });
    }
    var state = $("#job-state", panel);
    if (state) {
      state.innerHTML = "";
      var badge = document.createElement("span");
      badge.className = "badge tone-" + job.tone;
      badge.textContent = job.state_label;
      state.appendChild(badge);
    }
    var msg = $("#job-message", panel);
    if (msg) { msg.textContent = job.message || ""; }
    if (job.finished) {
      var done = $("#job-done", panel);
      if (done) { done.hidden = false; }
      panel.setAttribute("data-finished", "true");
    }
  }
  function follow(panel) {
    var pollUrl = panel.getAttribute("data-job-url");
    var finished = false;
    function finish(job) {
      if (finished) { return; }
      finished = true;
      renderJob(panel, job);
      /* refresh the cards below once, keeping the finished stages on top */
      if (document.body.getAttribute("data-page") === "settings" && panel.getAttribute("data-reloaded") !== "true") {
        window.setTimeout(function () { window.location.reload(); }, 600);
      }
    }
    function poll() {
      fetch(pollUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (job) {
          if (job.finished) { finish(job); } else { renderJob(panel, job); window.setTimeout(poll, 1000); }
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    }
    if (panel.getAttribute("data-finished") === "true") { return; }
    if (window.EventSource) {
      var es = new EventSource(panel.getAttribute("data-events-url"));
      es.onmessage = function (ev) {
        var job;
        try { job = JSON.parse(ev.data); } catch (e) { return; }
        if (job.finished) { es.close(); finish(job); } else { renderJob(panel, job); }
      };
      es.onerror = function () { es.close(); if (!finished) { poll(); } };
    } else if (window.fetch) {
      poll();
    }
  }
  $all("#job[data-job-url]").forEach(function (panel) {
    if (panel.getAttribute("data-finished") === "true") { return; }
    follow(panel);
  });

  /* -- disconnect: a dialog, delete behind the typed confirmation ---------------------- */
  var dialog = document.getElementById("disconnect-dialog");
  var opener = document.getElementById("open-disconnect");
  if (dialog && opener && typeof dialog.showModal === "function") {
    opener.addEventListener("click", function (ev) {
      ev.preventDefault();
      dialog.showModal();
      var first = dialog.querySelector("input[name=mode]:checked") || dialog.querySelector("input[name=mode]");
      if (first) { first.focus(); }
    });
    $all("[data-close-dialog]", dialog).forEach(function (el) {
      el.addEventListener("click", function (ev) { ev.preventDefault(); dialog.close(); opener.focus(); });
    });
  }
  $all("#disconnect-form").forEach(function (form) {
    var confirmBox = $("#confirm-delete", form);
    var submit = $("#disconnect-submit", form);
    function mode() { var m = form.querySelector("input[name=mode]:checked"); return m ? m.value : ""; }
    function sync() {
      var del = mode() === "delete";
      confirmBox.hidden = !del;
      submit.textContent = del ? "Delete my content and disconnect" : (mode() === "migrate" ? "Migrate back and disconnect" : "Disconnect");
    }
    $all("input[name=mode]", form).forEach(function (r) { r.addEventListener("change", sync); });
    sync();
  });

  /* -- dashboard: the users filter, live rollouts ---------------------------------------- */
  var usersTable = document.getElementById("users");
  var filterBar = document.getElementById("users-filter");
  if (usersTable && filterBar) {
    var q = $("#filter-q", filterBar);
    var st = $("#filter-status", filterBar);
    var count = $("#filter-count", filterBar);
    var rows = $all("tbody tr", usersTable);
    var apply = function () {
      var text = (q.value || "").toLowerCase();
      var status = st.value;
      var shown = 0;
      rows.forEach(function (tr) {
        var on = (!text || (tr.getAttribute("data-user") || "").toLowerCase().indexOf(text) >= 0) &&
                 (!status || tr.getAttribute("data-status") === status);
        tr.hidden = !on;
        if (on) { shown += 1; }
      });
      count.textContent = shown + " of " + rows.length + " shown";
    };
    q.addEventListener("input", apply);
    st.addEventListener("change", apply);
    var submitBtn = $("button[type=submit]", filterBar);
    if (submitBtn) { submitBtn.hidden = true; }
    filterBar.addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
    apply();
  }
  var section = document.getElementById("rollouts-section");
  if (section && window.fetch && section.getAttribute("data-live") === "true") {
    var pollRollouts = function () {
      fetch(section.getAttribute("data-poll-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (body) {
          var unknown = false;
          (body.rollouts || []).forEach(function (ro) {
            var row = section.querySelector("tr[data-rollout='" + ro.id + "']");
            if (!row) { unknown = true; return; }
            var bar = row.querySelector("progress");
            if (bar) { bar.max = ro.total || 1; bar.value = ro.done || 0; }
            var text = row.querySelector(".progress-text");
            if (text) { text.textContent = ro.progress_text; }
            var st = row.querySelector(".rollout-status");
            if (st) { st.textContent = ro.status; st.className = "badge rollout-status tone-" + ro.tone; }
          });
          /* a new rollout, or everything finished: the page again, with the totals */
          if (unknown || !body.live) { window.location.reload(); return; }
          window.setTimeout(pollRollouts, 2000);
        })
        .catch(function () { window.setTimeout(pollRollouts, 5000); });
    };
    window.setTimeout(pollRollouts, 1500);
  }
}());
