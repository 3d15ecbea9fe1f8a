/**
 * The end user's status page (didit_channels/status.html): keeps each session's status and
 * history current over the socket, starts verifications, and drives the DEBUG-only
 * "Simulate Didit" form. Configuration comes from data-* attributes on [data-didit-status].
 */

import { LiveConnection } from "./live.js";
import {
  announce,
  badge,
  bindConnectionIndicator,
  errorText,
  forgetOnSignOut,
  localizeTimes,
  timeElement,
} from "./ui.js";

const root = document.querySelector("[data-didit-status]");
if (root) init(root);

function init(page) {
  const list = page.querySelector("[data-didit-sessions]");
  const empty = page.querySelector("[data-didit-empty]");
  const announcer = page.querySelector("[data-didit-announcer]");
  const cards = new Map();
  for (const card of list.querySelectorAll(".didit-session[data-session-id]")) {
    cards.set(card.dataset.sessionId, card);
  }
  localizeTimes(page);

  const cursor = Number.parseInt(page.dataset.cursor, 10);
  const live = new LiveConnection({
    ticketsUrl: page.dataset.ticketsUrl,
    csrfToken: page.dataset.csrfToken,
    cursor: Number.isInteger(cursor) ? cursor : null,
  });
  bindConnectionIndicator(page, live);
  forgetOnSignOut(page, live);

  function cardFor(sessionId, status) {
    let card = cards.get(sessionId);
    if (card) return card;
    card = buildCard(sessionId, status);
    cards.set(sessionId, card);
    list.prepend(card);
    if (empty) empty.hidden = true;
    simulateOption(page, sessionId);
    return card;
  }

  live.addEventListener("status", ({ detail: frame }) => {
    if (typeof frame.session_id !== "string") return;
    const card = cardFor(frame.session_id, frame.status);
    const history = card.querySelector("[data-didit-history]");
    // The page may already show it (rendered just before the socket resumed).
    for (const item of history.children) {
      if (item.dataset.eventId === String(frame.id)) return;
    }
    setStatus(card, frame.status);
    history.prepend(historyItem(frame));
    card.classList.remove("didit-changed");
    // Restart the highlight animation (reading offsetWidth forces a reflow).
    void card.offsetWidth;
    card.classList.add("didit-changed");
    announce(announcer, `Verification ${frame.session_id} is now ${frame.status}.`);
  });

  live.addEventListener("snapshot", ({ detail: frame }) => {
    for (const entry of Array.isArray(frame.sessions) ? frame.sessions : []) {
      if (typeof entry.session_id !== "string") continue;
      setStatus(cardFor(entry.session_id, entry.status), entry.status);
    }
  });

  live.start();
  wireStart(page);
  wireSimulate(page);
}

function setStatus(card, status) {
  const current = card.querySelector("[data-didit-badge]");
  if (!current || current.dataset.status === status) return;
  current.dataset.status = status;
  current.textContent = status;
}

function buildCard(sessionId, status) {
  const card = document.createElement("li");
  card.className = "didit-session";
  card.dataset.sessionId = sessionId;

  const head = document.createElement("div");
  head.className = "didit-session-head";
  const title = document.createElement("h3");
  title.className = "didit-session-title";
  const code = document.createElement("code");
  code.textContent = sessionId;
  title.append("Verification ", code);
  const current = badge(status);
  current.setAttribute("data-didit-badge", "");
  head.append(title, current);

  const meta = document.createElement("p");
  meta.className = "didit-session-meta";
  meta.append("Started ", timeElement(new Date().toISOString()));

  const heading = document.createElement("h4");
  heading.className = "didit-visually-hidden";
  heading.textContent = "History";
  const history = document.createElement("ol");
  history.className = "didit-history";
  history.reversed = true;
  history.setAttribute("data-didit-history", "");

  card.append(head, meta, heading, history);
  return card;
}

function historyItem(frame) {
  const item = document.createElement("li");
  item.dataset.eventId = String(frame.id);
  const change = document.createElement("span");
  change.className = "didit-history-change";
  if (frame.previous_status) change.append(`${frame.previous_status} → `);
  change.append(badge(frame.status));
  item.append(timeElement(frame.occurred_at), " ", change);
  return item;
}

function showMessage(element, text, kind = "info") {
  if (!element) return;
  element.dataset.kind = kind;
  element.textContent = text;
  element.hidden = false;
}

function wireStart(page) {
  const button = page.querySelector("[data-didit-start]");
  const message = page.querySelector("[data-didit-start-message]");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    if (message) message.hidden = true;
    try {
      const response = await fetch(page.dataset.sessionsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "X-CSRFToken": page.dataset.csrfToken,
          "Content-Type": "application/json",
          Accept: "application/json",
        },
        body: "{}",
      });
      const body = await response.json().catch(() => null);
      if (response.ok && body && typeof body.url === "string" && body.url) {
        showMessage(message, "Opening Didit…");
        window.location.assign(body.url);
        return;
      }
      showMessage(
        message,
        errorText(body) || `Could not start a verification (HTTP ${response.status}).`,
        "error",
      );
    } catch {
      showMessage(message, "Could not reach the server. Check your connection.", "error");
    } finally {
      button.disabled = false;
    }
  });
}

function simulateOption(page, sessionId) {
  const select = page.querySelector("[data-didit-simulate-session]");
  if (!select) return;
  for (const option of select.options) {
    if (option.value === sessionId) return;
  }
  select.add(new Option(sessionId, sessionId));
}

function wireSimulate(page) {
  const form = page.querySelector("[data-didit-simulate]");
  if (!form) return;
  const message = form.querySelector("[data-didit-simulate-message]");
  const select = form.querySelector("[data-didit-simulate-session]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": page.dataset.csrfToken, Accept: "application/json" },
        body: new FormData(form),
      });
      const body = await response.json().catch(() => null);
      if (response.ok && body) {
        simulateOption(page, body.session_id);
        // The next click moves the same session on.
        if (select) select.value = body.session_id;
        showMessage(message, `Didit's webhook sent: ${body.session_id} → ${body.status}.`);
      } else {
        showMessage(message, errorText(body) || `Failed (HTTP ${response.status}).`, "error");
      }
    } catch {
      showMessage(message, "Could not reach the server.", "error");
    } finally {
      if (button) button.disabled = false;
    }
  });
}
