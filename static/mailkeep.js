// Small behaviours that htmx does not cover. Everything works without this file; it only saves clicks
// and keeps focus and announcements where keyboard and screen-reader users need them. No inline scripts:
// the Content-Security-Policy allows scripts from this origin only.
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
// (typed, kept from earlier, or stored for the entry being edited) are there.
// Which secret and which fields each login needs is the server's rule
// (logins.py), rendered into data-login-rules.
function updateTestButton(form) {
  const button = form.querySelector("[data-connection-test]");
  const filled = (name) => {
    const field = form.elements[name];
    return field && field.value !== undefined && field.value.trim() !== "";
  };
  const stored = (form.dataset.storedSecrets || "").split(" ");
  const rules = JSON.parse(form.dataset.loginRules).logins;
  const login = rules[form.elements.auth.value] || { secret: "password", needs: [] };
  const ready = ["host", "port", "username", ...login.needs].every(filled) &&
    (filled(login.secret) || filled(`${login.secret}_draft`) || stored.includes(login.secret));
  button.disabled = !ready;
}

function refresh(form) {
  showChoices(form);
  updateTestButton(form);
}

// `root` and what it holds (htmx:load names the new element itself).
function within(root, selector) {
  const found = [...root.querySelectorAll(selector)];
  return root.matches && root.matches(selector) ? [root, ...found] : found;
}

// The OAuth app form shows the fields of the chosen provider only (Microsoft's tenant, a custom provider's
// endpoints and scopes).
function showKind(form) {
  const kind = form.elements.kind.value;
  form.querySelectorAll("[data-kind-section]").forEach((section) => {
    section.hidden = section.dataset.kindSection !== kind;
  });
}

// The Microsoft 365 app-only preset: a tenant id typed as the token endpoint of OAuth2 client credentials
// becomes that tenant's token endpoint, and an empty scope Exchange Online's app-only scope, as the server
// does for a form sent without this script (forms.ConnectionForm.validate).
const MICROSOFT_TENANT = /^(?:[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}|[a-z0-9-]+\.onmicrosoft\.com)$/i;

function applyTenant(form) {
  const tokenUrl = form.elements.token_url;
  const tenant = tokenUrl.value.trim();
  if (!MICROSOFT_TENANT.test(tenant) || !form.dataset.msTokenUrl) return;
  tokenUrl.value = form.dataset.msTokenUrl.replace("{tenant}", tenant);
  if (!form.elements.scope.value.trim()) form.elements.scope.value = form.dataset.msScope;
}

function setUp(root) {
  within(root, CREDENTIAL_FORM).forEach((form) => {
    rememberChoice(form);
    refresh(form);
  });
  within(root, "form[data-kind-form]").forEach(showKind);
  within(root, "dialog[data-modal]").forEach(openModal);
}

document.addEventListener("change", (event) => {
  const kindForm = event.target.closest("form[data-kind-form]");
  if (kindForm && event.target.name === "kind") showKind(kindForm);
  const form = event.target.closest(CREDENTIAL_FORM);
  if (!form) return;
  if (event.target.name === "security" || event.target.name === "protocol") moveDefaultPort(form);
  if (event.target.name === "token_url") applyTenant(form);
  refresh(form);
});

document.addEventListener("input", (event) => {
  const form = event.target.closest(CREDENTIAL_FORM);
  if (form) updateTestButton(form);
});

// "Save and test" waits for the test before the next page comes: say so meanwhile.
document.addEventListener("submit", (event) => {
  if (event.submitter && event.submitter.matches("[data-save-and-test]")) {
    const indicator = event.target.querySelector(".save-indicator");
    if (indicator) indicator.textContent = "Saving, then testing the connection…";
  }
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
    filler.parentElement.querySelectorAll("[data-fill]").forEach((other) => {
      other.setAttribute("aria-pressed", String(other === filler));
    });
    // A provider's suggestion is taken: its button goes, and what it says about logging in stays.
    const suggestion = filler.closest(".suggestion");
    if (suggestion) {
      const taken = suggestion.querySelector(".taken");
      filler.remove();
      taken.hidden = false;
      taken.focus();
    }
  }
  // A dialog opened in place closes without leaving the page; opened as a page
  // of its own (no JavaScript at the time), its link goes back instead.
  const closer = event.target.closest("[data-close-dialog]");
  const dialog = closer && closer.closest("dialog[data-modal]");
  if (dialog) {
    event.preventDefault();
    dialog.close();
  }
});

// Enter in the alias form's credential search searches (htmx already has) instead of submitting the form.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches("[data-picker-search]")) {
    event.preventDefault();
    htmx.trigger(event.target, "search");
  }
});

// Modal dialogs (<dialog data-modal>, swapped into #dialog by htmx). showModal() moves focus in, keeps it
// there and closes on Escape; when one closes, it goes and focus returns to what opened it. A dialog that
// replaces another (its form answered) keeps the first one's opener.
let dialogOpener = null;

document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.target && event.detail.target.id === "dialog" && !document.querySelector("dialog[open]")) {
    dialogOpener = document.activeElement;
  }
});

function openModal(dialog) {
  if (dialog.open) return;
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (!document.querySelector("dialog[open]") && dialogOpener && dialogOpener.isConnected) {
      dialogOpener.focus();
      dialogOpener = null;
    }
  });
  dialog.showModal();
}

// An element marked data-keep-focus gets focus back when its answer replaced it (a row's Test button:
// the row is swapped), unless the user has moved on meanwhile. Its data-announce is said as it starts.
let refocusId = null;

document.addEventListener("htmx:beforeRequest", (event) => {
  const element = event.detail.elt;
  if (element.matches("[data-keep-focus]") && element.id) refocusId = element.id;
  if (element.dataset.announce) announce(element.dataset.announce);
});

document.addEventListener("htmx:afterSettle", () => {
  if (!refocusId) return;
  const again = document.getElementById(refocusId);
  const lost = !document.activeElement || document.activeElement === document.body;
  if (again && lost) again.focus();
  refocusId = null;
});

// What the server asks to say (HX-Trigger): "showMessage" in the message area everyone sees,
// "announce" in a live region for screen readers only (the visible change is elsewhere, a badge).
function showNotice(text, className) {
  const notice = document.createElement("p");
  notice.className = className;
  notice.textContent = text;
  document.getElementById("messages").replaceChildren(notice);
}

function announce(text) {
  document.getElementById("announcer").textContent = text;
}

document.body.addEventListener("showMessage", (event) => showNotice(event.detail.text, "notice"));
document.body.addEventListener("announce", (event) => announce(event.detail.text));

// Say so when the server cannot be reached or fails, instead of doing nothing.
document.addEventListener("htmx:sendError", () => showNotice("Mailkeep could not be reached. Check your connection and try again.", "refused"));
document.addEventListener("htmx:responseError", (event) => {
  showNotice(`Something went wrong (HTTP ${event.detail.xhr.status}). Try again; if it keeps happening, the server log says why.`, "refused");
});

document.addEventListener("DOMContentLoaded", () => setUp(document));
document.addEventListener("htmx:load", (event) => setUp(event.detail.elt));
