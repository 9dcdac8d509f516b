/* VPS Panel: the little plain JavaScript the pages use. Everything works without it. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  // Selects that submit their form on change (the language switcher).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });

  // Copy-to-clipboard buttons: <button data-copy="element-id" data-copied-label="Copied">.
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
    } finally {
      document.body.removeChild(area);
    }
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var copy = navigator.clipboard && window.isSecureContext ? navigator.clipboard.writeText(text) : fallbackCopy(text);
    copy.then(function () {
      var label = button.querySelector("[data-label]") || button;
      var original = label.textContent;
      label.textContent = button.getAttribute("data-copied-label") || "Copied";
      button.classList.add("is-copied");
      window.setTimeout(function () {
        label.textContent = original;
        button.classList.remove("is-copied");
      }, 1800);
    });
  });

  // The order page's summary follows the chosen region, image and plan.
  function updateSummary(form) {
    form.querySelectorAll("[data-summary]").forEach(function (output) {
      var name = output.getAttribute("data-summary");
      var attr = output.getAttribute("data-summary-attr") || "data-label";
      var field = form.elements[name];
      if (!field) return;
      var chosen = null;
      if (field.tagName === "SELECT") {
        chosen = field.options[field.selectedIndex];
      } else if (field.length !== undefined) {
        Array.prototype.forEach.call(field, function (input) {
          if (input.checked) chosen = input;
        });
      } else if (field.checked) {
        chosen = field;
      }
      var fallback = output.getAttribute("data-empty") || "—";
      var value = chosen ? chosen.getAttribute(attr) || chosen.textContent : null;
      output.textContent = value ? value.trim() : fallback;
    });
  }

  // Plans that no host of the chosen region can take are shown as unavailable, following the region
  // select. The map (region id -> ids of available plans) comes from the page (json_script); the server
  // checks again when the order is placed.
  function readAvailability(form) {
    var source = document.getElementById(form.getAttribute("data-plan-availability") || "");
    if (!source) return null;
    try {
      return JSON.parse(source.textContent);
    } catch (error) {
      return null;
    }
  }

  function applyAvailability(form, availability) {
    var region = form.elements.region;
    if (!availability || !region) return;
    var available = (availability[region.value] || []).map(String);
    var anyAvailable = false;
    form.querySelectorAll('input[name="plan"]').forEach(function (input) {
      var ok = available.indexOf(input.value) !== -1;
      var card = input.closest("[data-plan-card]");
      var flag = document.getElementById(input.id + "_unavailable");
      anyAvailable = anyAvailable || ok;
      if (!ok) input.checked = false;
      input.disabled = !ok;
      if (ok) {
        input.removeAttribute("aria-describedby");
      } else if (flag) {
        input.setAttribute("aria-describedby", flag.id);
      }
      if (card) card.classList.toggle("option-card--disabled", !ok);
      if (flag) flag.hidden = ok;
    });
    var soldOut = form.querySelector("[data-sold-out]");
    if (soldOut) soldOut.hidden = anyAvailable;
  }

  function preselectPlan(form) {
    if (!form.querySelector('input[name="plan"]:checked')) {
      var firstPlan = form.querySelector('input[name="plan"]:not(:disabled)');
      if (firstPlan) firstPlan.checked = true;
    }
  }

  function initOrderForms(root) {
    (root || document).querySelectorAll("form[data-order-form]").forEach(function (form) {
      if (form.dataset.summaryReady) return;
      form.dataset.summaryReady = "1";
      var availability = readAvailability(form);
      // The browser may restore another region after "back": follow what the select shows now.
      applyAvailability(form, availability);
      if (form.elements.region) {
        form.elements.region.addEventListener("change", function () {
          applyAvailability(form, availability);
          preselectPlan(form);
        });
      }
      // Preselect the first plan on sale when none is chosen yet, as hosting dashboards do.
      preselectPlan(form);
      form.addEventListener("change", function () {
        updateSummary(form);
      });
      updateSummary(form);
    });
  }

  // Forms that ask before they do something hard to undo: <form data-confirm="Really?">. A form with a
  // `confirmed` field is told that the question was answered here; without JavaScript the server asks on a
  // page of its own instead.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
    } else if (form.elements.confirmed) {
      form.elements.confirmed.value = "yes";
    }
  });

  // The top bar's Staff menu (<details data-nav-menu>) opens and closes without JavaScript; with it, a
  // click elsewhere or Escape closes it too (Escape gives the focus back to its button).
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-nav-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details[data-nav-menu][open]").forEach(function (menu) {
      var hadFocus = menu.contains(document.activeElement);
      menu.open = false;
      if (hadFocus) menu.querySelector("summary").focus();
    });
  });

  // The add-host form opens its TLS section when the URI asks for qemu+tls://.
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.form || !input.form.hasAttribute("data-host-form") || input.name !== "uri") return;
    var section = input.form.querySelector("[data-tls-section]");
    if (section && /^\s*qemu\+tls:/.test(input.value)) section.open = true;
  });

  // Live fragments: when the session has expired, htmx would swap the login page into the
  // fragment. Reload the whole page instead so the browser shows the login page properly.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    var loginUrl = document.body.getAttribute("data-login-url");
    if (loginUrl && xhr && xhr.responseURL && new URL(xhr.responseURL).pathname === loginUrl) {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });

  // Forms that need a word typed to confirm (the server's hostname before a rebuild or delete): the submit
  // button stays disabled until it matches. The server checks again.
  function syncConfirm(input) {
    var button = input.form && input.form.querySelector('button[type="submit"]');
    if (!button) return;
    var expected = (input.getAttribute("data-must-match") || "").toLowerCase();
    button.disabled = input.value.trim().toLowerCase() !== expected;
  }

  function initConfirmInputs(root) {
    (root || document).querySelectorAll("input[data-must-match]").forEach(syncConfirm);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input[data-must-match]")) syncConfirm(event.target);
  });

  // The server page: a message about an action started far down the page is brought into view, and the
  // "has started" note goes away once nothing is in flight any more (the activity list shows the outcome).
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== "server-messages") return;
    // The swap replaced the element: look up the new one.
    var target = document.getElementById("server-messages");
    if (!target || !target.querySelector(".alert")) return;
    var box = target.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) target.scrollIntoView({ block: "start" });
  });

  // Polled fragments keep half-filled forms (hx-preserve). Browsers without Element.moveBefore() lose the
  // focus when htmx moves the kept element: give it back, with the caret where it was.
  var focusBeforeSwap = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var active = document.activeElement;
    focusBeforeSwap = null;
    if (active && active !== document.body && active.closest && active.closest("[hx-preserve]")) {
      focusBeforeSwap = { elt: active, start: active.selectionStart, end: active.selectionEnd };
    }
  });

  document.addEventListener("htmx:afterSwap", function () {
    var saved = focusBeforeSwap;
    focusBeforeSwap = null;
    if (!saved || !saved.elt.isConnected || document.activeElement === saved.elt) return;
    saved.elt.focus({ preventScroll: true });
    if (typeof saved.start === "number" && saved.elt.setSelectionRange) {
      try {
        saved.elt.setSelectionRange(saved.start, saved.end);
      } catch (error) {
        /* not a text field */
      }
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var status = document.getElementById("server-status");
    if (status && !status.getAttribute("data-task")) {
      document.querySelectorAll("#server-messages .alert--success").forEach(function (alert) {
        var list = alert.parentNode;
        alert.remove();
        if (list && !list.children.length) list.remove();
      });
    }
    // htmx re-enables the buttons it disabled during a request: keep confirmation buttons honest.
    initConfirmInputs();
  });

  // After a form comes back with errors, bring the first invalid field (or, for errors about the whole
  // form, the form's error message) into view.
  function focusFirstError() {
    if (document.querySelector("main [autofocus]:focus")) return;
    var invalid = document.querySelector("main .field--invalid input, main .field--invalid select, main .field--invalid textarea");
    var formError = document.querySelector("main form > .alert--error");
    if (formError && (!invalid || formError.compareDocumentPosition(invalid) & Node.DOCUMENT_POSITION_FOLLOWING)) {
      formError.scrollIntoView({ block: "center" });
    }
    if (invalid) {
      invalid.focus({ preventScroll: true });
      if (!formError) invalid.scrollIntoView({ block: "center" });
    }
  }

  function init() {
    initOrderForms();
    initConfirmInputs();
    focusFirstError();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
