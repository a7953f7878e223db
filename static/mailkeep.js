// Small behaviours of the credential form that htmx does not cover. Everything
// works without this file; it only saves clicks. No inline scripts: the
// Content-Security-Policy allows scripts from this origin only.
"use strict";

// Moving Security between SSL/TLS and STARTTLS (or changing Protocol) moves a
// port that is still a default (993/143, 995/110) to the matching default.
function defaultPorts(form) {
  return JSON.parse(form.dataset.defaultPorts || "{}");
}

function rememberChoice(form) {
  form.dataset.lastProtocol = form.elements.protocol.value;
  form.dataset.lastSecurity = form.elements.security.value;
}

function moveDefaultPort(form) {
  const ports = defaultPorts(form);
  const previous = (ports[form.dataset.lastProtocol] || {})[form.dataset.lastSecurity];
  const next = (ports[form.elements.protocol.value] || {})[form.elements.security.value];
  if (next && String(previous) === form.elements.port.value) {
    form.elements.port.value = next;
  }
  rememberChoice(form);
}

// Test connection stays disabled until Host, Port, Username and a password
// (typed, or stored for the entry being edited) are there.
function updateTestButton(form) {
  const button = form.querySelector("[data-connection-test]");
  if (!button) return;
  const filled = (name) => form.elements[name] && form.elements[name].value.trim() !== "";
  const password = filled("password") || form.hasAttribute("data-stored-password");
  button.disabled = !(filled("host") && filled("port") && filled("username") && password);
}

function setUp(root) {
  root.querySelectorAll("form[data-default-ports]").forEach((form) => {
    rememberChoice(form);
    updateTestButton(form);
  });
}

document.addEventListener("change", (event) => {
  const form = event.target.closest("form[data-default-ports]");
  if (form && (event.target.name === "security" || event.target.name === "protocol")) {
    moveDefaultPort(form);
    updateTestButton(form);
  }
});

document.addEventListener("input", (event) => {
  const form = event.target.closest("form[data-default-ports]");
  if (form) updateTestButton(form);
});

// A dialog opened in place closes without leaving the page; opened as a page
// of its own (no JavaScript at the time), its link goes back instead.
document.addEventListener("click", (event) => {
  const closer = event.target.closest("[data-close-dialog]");
  const container = closer && closer.closest("#dialog");
  if (container) {
    event.preventDefault();
    container.replaceChildren();
  }
});

// Say so when the server cannot be reached or fails, instead of doing nothing.
function showProblem(text) {
  const messages = document.getElementById("messages");
  const notice = document.createElement("p");
  notice.className = "refused";
  notice.textContent = text;
  messages.replaceChildren(notice);
}

document.addEventListener("htmx:sendError", () => showProblem("Mailkeep could not be reached. Check your connection and try again."));
document.addEventListener("htmx:responseError", (event) => {
  showProblem(`Something went wrong (HTTP ${event.detail.xhr.status}). Try again; if it keeps happening, the server log says why.`);
});

document.addEventListener("DOMContentLoaded", () => setUp(document));
document.addEventListener("htmx:load", (event) => setUp(event.detail.elt));
