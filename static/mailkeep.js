// Small behaviours of the credential form that htmx does not cover. Everything
// works without this file; it only saves clicks. No inline scripts: the
// Content-Security-Policy allows scripts from this origin only.
"use strict";

const CREDENTIAL_FORM = "form[data-default-ports]";

// Moving Security between SSL/TLS and STARTTLS (or changing Protocol) moves a
// port that is still a default (993/143, 995/110) to the matching default.
function rememberChoice(form) {
  form.dataset.lastProtocol = form.elements.protocol.value;
  form.dataset.lastSecurity = form.elements.security.value;
}

function moveDefaultPort(form) {
  const ports = JSON.parse(form.dataset.defaultPorts);
  const previous = (ports[form.dataset.lastProtocol] || {})[form.dataset.lastSecurity];
  const next = (ports[form.elements.protocol.value] || {})[form.elements.security.value];
  if (next && String(previous) === form.elements.port.value) {
    form.elements.port.value = next;
  }
  rememberChoice(form);
}

// Show the login fields of the chosen Authentication only; POP3 reads INBOX only.
function showChoices(form) {
  const auth = form.elements.auth.value;
  form.querySelectorAll("[data-auth-section]").forEach((section) => {
    section.hidden = section.dataset.authSection !== auth;
  });
  const pop3 = form.elements.protocol.value === "POP3";
  form.elements.folder.readOnly = pop3;
  if (pop3) form.elements.folder.value = "INBOX";
}

// Test connection stays disabled until the server, the login and its secret
// (typed, or stored for the entry being edited) are there. Which secret and
// which fields each login needs is the server's rule (logins.py), rendered
// into data-login-rules.
function updateTestButton(form) {
  const button = form.querySelector("[data-connection-test]");
  const filled = (name) => form.elements[name] && form.elements[name].value.trim() !== "";
  const stored = (form.dataset.storedSecrets || "").split(" ");
  const rules = JSON.parse(form.dataset.loginRules).logins;
  const login = rules[form.elements.auth.value] || { secret: "password", needs: [] };
  const ready = ["host", "port", "username", ...login.needs].every(filled) &&
    (filled(login.secret) || stored.includes(login.secret));
  button.disabled = !ready;
}

function refresh(form) {
  showChoices(form);
  updateTestButton(form);
}

function setUp(root) {
  root.querySelectorAll(CREDENTIAL_FORM).forEach((form) => {
    rememberChoice(form);
    refresh(form);
  });
}

document.addEventListener("change", (event) => {
  const form = event.target.closest(CREDENTIAL_FORM);
  if (!form) return;
  if (event.target.name === "security" || event.target.name === "protocol") moveDefaultPort(form);
  refresh(form);
});

document.addEventListener("input", (event) => {
  const form = event.target.closest(CREDENTIAL_FORM);
  if (form) updateTestButton(form);
});

document.addEventListener("click", (event) => {
  // A suggestion (provider settings, a folder from the server) fills its fields when the user takes it.
  const filler = event.target.closest("[data-fill]");
  if (filler) {
    const form = filler.closest("form");
    Object.entries(JSON.parse(filler.dataset.fill)).forEach(([name, value]) => {
      form.elements[name].value = value;
    });
    rememberChoice(form);
    refresh(form);
    const suggestion = filler.closest(".suggestion");
    if (suggestion) suggestion.remove();
    filler.parentElement.querySelectorAll("[data-fill]").forEach((other) => {
      other.setAttribute("aria-pressed", String(other === filler));
    });
  }
  // A dialog opened in place closes without leaving the page; opened as a page
  // of its own (no JavaScript at the time), its link goes back instead.
  const closer = event.target.closest("[data-close-dialog]");
  const container = closer && closer.closest("#dialog");
  if (container) {
    event.preventDefault();
    container.replaceChildren();
  }
});

// Enter in the alias form's credential search searches (htmx already has) instead of submitting the form.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches("[data-picker-search]")) {
    event.preventDefault();
    htmx.trigger(event.target, "search");
  }
});

// Say so when the server cannot be reached or fails, instead of doing nothing.
function showProblem(text) {
  const notice = document.createElement("p");
  notice.className = "refused";
  notice.textContent = text;
  document.getElementById("messages").replaceChildren(notice);
}

document.addEventListener("htmx:sendError", () => showProblem("Mailkeep could not be reached. Check your connection and try again."));
document.addEventListener("htmx:responseError", (event) => {
  showProblem(`Something went wrong (HTTP ${event.detail.xhr.status}). Try again; if it keeps happening, the server log says why.`);
});

document.addEventListener("DOMContentLoaded", () => setUp(document));
document.addEventListener("htmx:load", (event) => setUp(event.detail.elt));
