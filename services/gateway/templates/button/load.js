/*
 * Flattr embed script: <script src="https://PLATFORM/js/load.js" async></script>
 *
 * Turns into a Flattr button (an iframe of PLATFORM/button/<id>):
 *   - every <a class="FlattrButton" href="THING_URL">: the thing registered at THING_URL;
 *   - every element with data-flattr-url="THING_URL" and/or data-flattr-uid="USERNAME"
 *     (without data-flattr-url: its href, else this page's address).
 * Optional attributes, used when the thing is not registered yet and data-flattr-uid (or the old
 * rev="flattr;uid:USERNAME;..." form) names its creator: data-flattr-title, -description, -tags,
 * -category, -language, -hidden. Such a thing shows as a link to its auto-submit page, where the
 * first flattr registers it. A thing whose owner is not the data-flattr-uid (or rev uid) user is
 * not shown: the element is left as it is (data-flattr-done="owner-mismatch"). Call
 * FlattrLoader.setup() again after adding buttons to the page.
 */
(function () {
  "use strict";
  if (window.FlattrLoader && window.FlattrLoader.setup) { window.FlattrLoader.setup(); return; }

  function findScript() {
    if (document.currentScript && document.currentScript.src) return document.currentScript;
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (/\/js\/load\.js(?:[?#]|$)/.test(scripts[i].src)) return scripts[i];
    }
    return null;
  }

  var script = findScript();
  if (!script) return;
  // the platform's base address: the script's own address without /js/load.js
  var base = script.src.replace(/\/js\/load\.js(?:[?#].*)?$/, "");
  var FIELDS = ["title", "description", "tags", "category", "language", "hidden"];
  var DONE = "data-flattr-done";

  function readRev(element) {
    // Flattr's old form: rev="flattr;uid:alice;category:text;tags:a,b;"
    var out = {};
    var rev = element.getAttribute("rev") || "";
    if (rev.indexOf("flattr;") !== 0) return out;
    rev.slice(7).split(";").forEach(function (part) {
      var at = part.indexOf(":");
      if (at > 0) out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
    });
    return out;
  }

  function options(element) {
    var rev = readRev(element);
    var out = {
      url: element.getAttribute("data-flattr-url") || element.getAttribute("href") || window.location.href,
      uid: element.getAttribute("data-flattr-uid") || rev.uid || ""
    };
    FIELDS.forEach(function (name) {
      var value = element.getAttribute("data-flattr-" + name) || rev[name] || "";
      if (!value && name === "title") value = element.getAttribute("title") || (element.textContent || "").trim();
      if (value) out[name] = value;
    });
    out.url = new URL(out.url, window.location.href).href;  // relative hrefs name things on this page's site
    return out;
  }

  function buttonFrame(id, title) {
    var frame = document.createElement("iframe");
    frame.src = base + "/button/" + encodeURIComponent(id);
    frame.title = "Flattr" + (title ? ": " + title : "");
    frame.className = "FlattrButtonFrame";
    frame.width = "160";
    frame.height = "24";
    frame.setAttribute("scrolling", "no");
    frame.setAttribute("loading", "lazy");
    frame.style.border = "0";
    frame.style.overflow = "hidden";
    frame.style.verticalAlign = "middle";
    return frame;
  }

  function autoSubmitLink(opts) {
    var query = "user_id=" + encodeURIComponent(opts.uid) + "&url=" + encodeURIComponent(opts.url);
    FIELDS.forEach(function (name) {
      if (opts[name]) query += "&" + name + "=" + encodeURIComponent(opts[name]);
    });
    var link = document.createElement("a");
    link.href = base + "/submit/auto?" + query;
    link.className = "FlattrButtonAutoSubmit";
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Flattr this";
    return link;
  }

  function render(element) {
    if (element.getAttribute(DONE)) return;
    element.setAttribute(DONE, "pending");
    var opts = options(element);
    fetch(base + "/rest/v2/things/lookup?url=" + encodeURIComponent(opts.url), {
      credentials: "omit",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (response.ok) {
        return response.json().then(function (thing) {
          if (typeof thing.id !== "number") throw new Error("unexpected answer");
          if (opts.uid && thing.owner && thing.owner.username !== opts.uid) {
            // someone else registered this page's URL: the page's creator is opts.uid, and a
            // button for another user's thing would send this page's flattrs to them
            element.setAttribute(DONE, "owner-mismatch");
            return;
          }
          element.replaceWith(buttonFrame(thing.id, thing.title));
        });
      }
      if (response.status === 404 && opts.uid) {
        element.replaceWith(autoSubmitLink(opts));
        return;
      }
      element.setAttribute(DONE, "not-found");  // left as it is: a plain link
    }).catch(function () {
      element.setAttribute(DONE, "failed");
    });
  }

  function setup() {
    var seen = [];
    var nodes = document.querySelectorAll("a.FlattrButton, [data-flattr-url], [data-flattr-uid]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node.tagName === "SCRIPT" || seen.indexOf(node) >= 0) continue;
      seen.push(node);
      render(node);
    }
  }

  window.FlattrLoader = { setup: setup, base: base };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
