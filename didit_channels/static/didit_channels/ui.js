/**
 * Small DOM helpers shared by status.js and desk.js: the connection indicator,
 * screen-reader announcements, time and duration formatting.
 */

const CONNECTION_TEXT = {
  connecting: () => "Connecting…",
  live: () => "Live",
  waiting: ({ reason, retryIn }) =>
    reason === "too-many"
      ? `Too many open windows. Retrying in ${seconds(retryIn)}…`
      : `Connection lost. Reconnecting in ${seconds(retryIn)}…`,
  offline: () => "Offline. Waiting for the network…",
  stopped: ({ reason }) =>
    ({
      revoked: "Disconnected: your access to live updates was withdrawn.",
      "signed-out": "Signed out. Log in again to see live updates.",
    })[reason] || "Live updates stopped.",
};

function seconds(ms) {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

/** Keep the `[data-didit-connection]` element inside `root` in step with `connection`. */
export function bindConnectionIndicator(root, connection) {
  const indicator = root.querySelector("[data-didit-connection]");
  if (!indicator) return;
  const text = indicator.querySelector("[data-didit-connection-text]") || indicator;
  connection.addEventListener("state", (event) => {
    const { state, reason } = event.detail;
    indicator.dataset.state = state;
    indicator.dataset.reason = reason || "";
    const describe = CONNECTION_TEXT[state];
    if (describe) text.textContent = describe(event.detail);
  });
}

/**
 * When `connection` stops for good because the login ended ("signed-out") or access was
 * withdrawn ("revoked"), empty and hide every `[data-didit-private]` element inside `root`:
 * a page left open on a shared screen stops showing what that user was allowed to see.
 */
export function forgetOnSignOut(root, connection) {
  connection.addEventListener("state", (event) => {
    const { state, reason } = event.detail;
    if (state !== "stopped" || (reason !== "signed-out" && reason !== "revoked")) return;
    for (const element of root.querySelectorAll("[data-didit-private]")) {
      element.replaceChildren();
      element.hidden = true;
    }
  });
}

/** Say `message` through an aria-live region (cleared first so a repeat is heard again). */
export function announce(region, message) {
  if (!region) return;
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = message;
  }, 50);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** A `<time>` element for an ISO 8601 string, in the reader's time zone. */
export function timeElement(iso, { withDate = true } = {}) {
  const element = document.createElement("time");
  element.dateTime = iso || "";
  element.textContent = formatTime(iso, { withDate });
  return element;
}

export function formatTime(iso, { withDate = true } = {}) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return iso || "";
  return (withDate ? dateTime : timeOnly).format(date);
}

/** Rewrite server-rendered `<time datetime>` texts (UTC) in the reader's time zone. */
export function localizeTimes(root, { withDate = true } = {}) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    element.textContent = formatTime(element.dateTime, { withDate });
  }
}

/** "4 min 12 s"-style text; the same rules as didit_channels.views.format_duration. */
export function formatDuration(totalSeconds) {
  if (totalSeconds === null || totalSeconds === undefined) return "–";
  let total = Math.round(totalSeconds);
  if (total < 60) return `${total} s`;
  let minutes = Math.floor(total / 60);
  total %= 60;
  if (minutes < 60) return `${minutes} min ${total} s`;
  let hours = Math.floor(minutes / 60);
  minutes %= 60;
  if (hours < 48) return `${hours} h ${minutes} min`;
  const days = Math.floor(hours / 24);
  hours %= 24;
  return `${days} d ${hours} h`;
}

/** A status badge; CSS colours it by `data-status`. */
export function badge(status) {
  const element = document.createElement("span");
  element.className = "didit-badge";
  element.dataset.status = status;
  element.textContent = status;
  return element;
}

/** The most helpful text in an error answer: DRF's `detail`, else the first message. */
export function errorText(body) {
  if (!body || typeof body !== "object") return "";
  if (typeof body.detail === "string") return body.detail;
  for (const value of Object.values(body)) {
    if (typeof value === "string") return value;
    if (Array.isArray(value) && typeof value[0] === "string") return value[0];
  }
  return "";
}

/** Select elements by an attribute value without building a selector from data. */
export function findByData(root, selector, key, value) {
  for (const element of root.querySelectorAll(selector)) {
    if (element.dataset[key] === value) return element;
  }
  return null;
}
