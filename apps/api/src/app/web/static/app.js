// Collection web UI: small enhancements on top of server-rendered pages. Every page works
// without this file; with it, run progress follows the run's events as they happen (or
// polls, without EventSource), further changes of a run load in place, the schedule forms preview the cron expression as it is typed and dates
// show in the reader's time zone.
(function () {
  "use strict";

  // Requests the page makes act in the organization it was rendered for (not whichever
  // one another tab switched to since).
  var FETCH_HEADERS = { "X-Requested-With": "fetch" };
  var ORG = document.querySelector('meta[name="collection-org"]');
  if (ORG) FETCH_HEADERS["X-Org-Id"] = ORG.getAttribute("content");

  function signInAgain() {
    var here = window.location.pathname + window.location.search;
    window.location.assign("/sign-in?reason=ended&next=" + encodeURIComponent(here));
  }

  // The HTML of a fragment, or null (after sending the browser to sign in on a 401).
  function fetchFragment(url) {
    return fetch(url, { headers: FETCH_HEADERS, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          signInAgain();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .catch(function () { return null; });
  }

  function elementFrom(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  // Puts `fresh` (a new copy of a live part) in the place of `element`, keeping the focus
  // on the same button; returns whichever is in the page now.
  function swap(element, fresh) {
    if (!fresh || !element.isConnected) return element;
    var focused = document.activeElement;
    var focusedForm = focused && element.contains(focused) && focused.form ? focused.form.getAttribute("action") : null;
    localizeTimes(fresh);
    element.replaceWith(fresh);
    if (focusedForm) {
      var again = fresh.querySelector('form[action="' + focusedForm + '"] button');
      if (again) again.focus();
    }
    return fresh;
  }

  var RUN_CHANGED = "collection:run-changed";
  var following = false;  // a stream of the run's events feeds this page

  // Elements with data-live-url are replaced by a fresh copy from that URL: every
  // data-interval ms, or, while the page follows its run's events, after each change (at
  // most once per data-interval). The server leaves the attribute out once nothing can
  // change; `data-finished` then asks for the whole page again (a finished run shows its
  // results).
  function poll(element) {
    var url = element.getAttribute("data-live-url");
    var interval = Number(element.getAttribute("data-interval")) || 1500;
    var last = null, timer = null, started = 0;
    var busy = false, again = false, done = false;
    function refresh() {
      busy = true;
      started = Date.now();
      fetchFragment(url).then(function (html) {
        busy = false;
        if (html !== null && html !== last) {
          last = html;
          element = swap(element, elementFrom(html));
          if (!element.hasAttribute("data-live-url")) {
            done = true;
            document.removeEventListener(RUN_CHANGED, changed);
            if (element.hasAttribute("data-finished")) window.location.reload();
            return;
          }
        }
        if (again) {
          again = false;
          changed();
        } else if (!following) {
          schedule(html === null ? interval * 3 : interval);
        }
      });
    }
    function schedule(delay) {
      if (timer !== null || done) return;
      timer = window.setTimeout(function () {
        timer = null;
        if (document.hidden && !following) schedule(interval);
        else refresh();
      }, delay);
    }
    function changed() {  // the run changed: refresh, at most once per interval
      if (busy) again = true;
      else schedule(Math.max(0, started + interval - Date.now()));
    }
    document.addEventListener(RUN_CHANGED, changed);
    if (!following) schedule(interval);
  }

  // A run page's status part follows the run's Server-Sent Events: each `live` event is the
  // part rendered anew, and the page's other live parts refresh after it. Without
  // EventSource, or when the stream keeps failing, the part polls like the others.
  function follow(element) {
    var source = new window.EventSource(element.getAttribute("data-events-url"));
    var failures = 0;
    following = true;
    source.addEventListener("live", function (event) {
      failures = 0;
      element = swap(element, elementFrom(event.data));
      document.dispatchEvent(new window.CustomEvent(RUN_CHANGED));
      if (!element.hasAttribute("data-live-url")) {
        source.close();
        if (element.hasAttribute("data-finished")) window.location.reload();
      }
    });
    source.addEventListener("end", function () { source.close(); });
    source.addEventListener("error", function () {
      failures += 1;
      if (source.readyState !== window.EventSource.CLOSED && failures < 3) return;
      source.close();  // poll instead: this part from now, the others after one more refresh
      following = false;
      if (element.hasAttribute("data-live-url")) poll(element);
      document.dispatchEvent(new window.CustomEvent(RUN_CHANGED));
    });
  }

  function live() {
    var streamed = document.querySelector("[data-events-url][data-live-url]");
    if (streamed && window.EventSource) follow(streamed);
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-url]"), function (element) {
      if (!(following && element === streamed)) poll(element);
    });
  }

  // Moments are written one way on every page: "Mon 2026-12-07 06:00 CET". The server
  // writes them in the reader's zone once this script has told it which (a cookie), else in
  // UTC; <time data-local> elements in another zone than the reader's are rewritten here,
  // with the UTC time as their tooltip.
  var HERE = null;
  try {
    HERE = window.Intl ? Intl.DateTimeFormat().resolvedOptions().timeZone : null;
  } catch (error) {
    HERE = null;
  }
  var ZONE_COOKIE = "collection_zone";

  function momentText(moment, zone) {
    var parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
    }).formatToParts(moment).forEach(function (part) { parts[part.type] = part.value; });
    return parts.weekday + " " + parts.year + "-" + parts.month + "-" + parts.day + " " +
      parts.hour + ":" + parts.minute + " " + parts.timeZoneName;
  }

  // For other scripts of the pages (charts.js): a moment as the pages write it.
  window.Collection = {
    zone: HERE || "UTC",
    moment: function (date) { return momentText(date, HERE || "UTC"); }
  };

  function localizeTimes(root) {
    if (!HERE) return;
    Array.prototype.forEach.call(root.querySelectorAll("time[data-local]"), function (element) {
      if (element.getAttribute("data-zone") === HERE) return;
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      if (!element.title) element.title = element.textContent;
      element.textContent = momentText(moment, HERE);
      element.setAttribute("data-zone", HERE);
    });
    Array.prototype.forEach.call(root.querySelectorAll("[data-viewer-zone]"), function (element) {
      element.textContent = HERE;
    });
  }

  function rememberZone() {
    if (!HERE) return;
    var current = document.cookie.split("; ").filter(function (pair) {
      return pair.indexOf(ZONE_COOKIE + "=") === 0;
    })[0];
    var value = encodeURIComponent(HERE);
    if (current === ZONE_COOKIE + "=" + value) return;
    document.cookie = ZONE_COOKIE + "=" + value + "; path=/; max-age=31536000; samesite=lax" +
      (window.location.protocol === "https:" ? "; secure" : "");
  }

  // "Show more" of a run's changes: the next page of rows is appended in place (without
  // this script the link opens the run's page with that next page).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-more]");
    if (!link) return;
    var section = link.closest(".change-section");
    var body = section && section.querySelector("tbody");
    if (!body) return;
    event.preventDefault();
    link.setAttribute("aria-disabled", "true");
    fetchFragment(link.getAttribute("data-more")).then(function (html) {
      var fresh = html === null ? null : elementFrom(html);
      if (!fresh) {
        window.location.assign(link.href);
        return;
      }
      localizeTimes(fresh);
      var rows = Array.prototype.slice.call(fresh.querySelectorAll("tbody > tr"));
      rows.forEach(function (row) { body.appendChild(row); });
      var next = fresh.querySelector("a[data-more]");
      var count = section.querySelector(".more-count");
      if (count && count.getAttribute("data-total")) {
        var first = Number(count.getAttribute("data-first"));
        count.textContent = first + "–" + (first + body.rows.length - 1) + " of " + count.getAttribute("data-total");
      }
      if (next) {
        link.href = next.href;
        link.setAttribute("data-more", next.getAttribute("data-more"));
        link.removeAttribute("aria-disabled");
      } else {
        link.remove();
      }
      if (rows.length) rows[0].focus();
    });
  });

  // Forms with data-confirm ask first (cancelling a run, deleting a preset).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // The schedule form: description and next fire times of what is being typed.
  function schedulePreview() {
    var cron = document.getElementById("cron_expression");
    var zone = document.getElementById("timezone");
    var panel = document.getElementById("cron-preview");
    if (!cron || !zone || !panel || !cron.getAttribute("data-preview-url")) return;
    var timer = null;
    var sequence = 0;

    function showErrors(body) {
      var field = body ? body.getAttribute("data-error-field") : null;
      var message = body ? body.getAttribute("data-error") : null;
      [["cron_expression", cron], ["timezone", zone]].forEach(function (pair) {
        var slot = document.getElementById(pair[0] + "-error");
        var wrong = field === pair[0];
        if (slot) {
          slot.textContent = wrong ? message : "";
          slot.hidden = !wrong;
        }
        if (wrong) pair[1].setAttribute("aria-invalid", "true");
        else pair[1].removeAttribute("aria-invalid");
      });
    }

    var boundsZone = document.getElementById("bounds-zone"); // "the start and end are in"

    function update() {
      if (boundsZone) boundsZone.textContent = zone.value.trim() || "UTC";
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        var mine = ++sequence;
        var params = new URLSearchParams({ cron_expression: cron.value, timezone: zone.value });
        fetchFragment(cron.getAttribute("data-preview-url") + "?" + params.toString()).then(function (html) {
          if (html === null || mine !== sequence) return;
          panel.innerHTML = html;
          showErrors(panel.firstElementChild);
        });
      }, 250);
    }

    cron.addEventListener("input", update);
    zone.addEventListener("input", update);
    zone.addEventListener("change", update);
    Array.prototype.forEach.call(document.querySelectorAll("[data-cron]"), function (button) {
      button.addEventListener("click", function () {
        cron.value = button.getAttribute("data-cron");
        cron.focus();
        update();
      });
    });
    var mine = document.getElementById("use-my-timezone");
    var here = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (mine && here) {
      mine.textContent = "Use " + here;
      mine.hidden = false;
      mine.addEventListener("click", function () {
        zone.value = here;
        zone.focus();
        update();
      });
    }
  }

  // The new-run form: what the run would need of the providers, as its fields change.
  function runEstimate() {
    var panel = document.getElementById("run-estimate");
    var form = panel && panel.closest("form");
    if (!form) return;
    var timer = null;
    var sequence = 0;

    function update() {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        var mine = ++sequence;
        var params = new URLSearchParams();
        ["preset_id", "products_per_category", "listings_per_product"].forEach(function (name) {
          var field = form.elements.namedItem(name);
          if (field) params.set(name, field.value);
        });
        fetchFragment(panel.getAttribute("data-estimate-url") + "?" + params.toString()).then(function (html) {
          if (html === null || mine !== sequence) return;
          panel.innerHTML = html;
          localizeTimes(panel);
        });
      }, 250);
    }

    form.addEventListener("input", update);
    form.addEventListener("change", update);
    if (form.elements.namedItem("preset_id") && form.elements.namedItem("preset_id").value) update();
  }

  // The schedules calendar: a link to show its days in the reader's own time zone.
  function calendarZoneLink() {
    var link = document.querySelector("[data-zone-link]");
    var shown = document.getElementById("calendar-zone");
    var here = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!link || !shown || !here || here === shown.value) return;
    link.href = "/schedules?" + new URLSearchParams({ zone: here }).toString() + "#calendar-heading";
    link.textContent = "Show in " + here;
    link.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    rememberZone();
    localizeTimes(document);
    live();
    schedulePreview();
    runEstimate();
    calendarZoneLink();
  });
})();
