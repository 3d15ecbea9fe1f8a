/**
 * The live desk in the admin (admin/didit_channels/desk.html): a feed of every status change
 * as it happens, and the queue at a glance (sessions by status as bars, the median time from
 * start to decision). The bars move at once with each change; the figures are then re-read
 * from the server (debounced), which computes them in the database.
 */

import { LiveConnection } from "./live.js";
import {
  badge,
  bindConnectionIndicator,
  forgetOnSignOut,
  formatDuration,
  localizeTimes,
  timeElement,
} from "./ui.js";

const FEED_LIMIT = 100;
const REFRESH_DELAY = 400;
const SVG = "http://www.w3.org/2000/svg";

const root = document.querySelector("[data-didit-desk]");
if (root) init(root);

function init(desk) {
  const feed = desk.querySelector("[data-didit-feed]");
  const feedEmpty = desk.querySelector("[data-didit-feed-empty]");
  const statsElement = document.getElementById("didit-desk-stats");
  let stats = statsElement ? JSON.parse(statsElement.textContent) : null;
  const userNames = new Map();
  for (const user of feed.querySelectorAll("[data-user-id]")) {
    if (user.dataset.userId) userNames.set(user.dataset.userId, user.textContent);
  }
  localizeTimes(feed, { withDate: false });

  const cursor = Number.parseInt(desk.dataset.cursor, 10);
  const live = new LiveConnection({
    ticketsUrl: desk.dataset.ticketsUrl,
    csrfToken: desk.dataset.csrfToken,
    cursor: Number.isInteger(cursor) ? cursor : null,
  });
  bindConnectionIndicator(desk, live);
  forgetOnSignOut(desk, live);

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      try {
        const response = await fetch(desk.dataset.statsUrl, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) return;
        stats = await response.json();
        renderStats(desk, stats);
        learnNames(feed, userNames, stats.users);
      } catch {
        // The next change or reconnect tries again.
      }
    }, REFRESH_DELAY);
  }

  live.addEventListener("status", ({ detail: frame }) => {
    for (const item of feed.children) {
      if (item.dataset.eventId === String(frame.id)) return;
    }
    feed.prepend(feedItem(desk, frame, userNames));
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    if (feedEmpty) feedEmpty.hidden = true;
    if (stats && frame.id > stats.cursor) {
      moveCount(stats, frame);
      renderStats(desk, stats);
    }
    refreshSoon();
  });
  live.addEventListener("hello", refreshSoon);
  live.addEventListener("resumed", refreshSoon);
  live.start();
}

function feedItem(desk, frame, userNames) {
  const item = document.createElement("li");
  item.className = "didit-feed-item didit-changed";
  item.dataset.eventId = String(frame.id);

  const link = document.createElement("a");
  link.href = desk.dataset.sessionUrlTemplate.replace(
    "__session__",
    encodeURIComponent(frame.session_id),
  );
  link.textContent = frame.session_id;

  const user = document.createElement("span");
  user.className = "didit-feed-user";
  if (frame.user === null || frame.user === undefined) {
    user.textContent = "unassigned";
  } else {
    user.dataset.userId = String(frame.user);
    user.textContent = userNames.get(String(frame.user)) || `user #${frame.user}`;
  }

  const change = document.createElement("span");
  change.className = "didit-feed-change";
  if (frame.previous_status) change.append(badge(frame.previous_status), " → ");
  change.append(badge(frame.status));

  item.append(timeElement(frame.occurred_at, { withDate: false }), " ", link, " ", user, " ", change);
  return item;
}

/** Name the users the feed only knew by primary key. */
function learnNames(feed, userNames, users) {
  if (!users || typeof users !== "object") return;
  for (const [pk, name] of Object.entries(users)) userNames.set(pk, String(name));
  for (const user of feed.querySelectorAll(".didit-feed-user[data-user-id]")) {
    const name = userNames.get(user.dataset.userId);
    if (name && user.textContent !== name) user.textContent = name;
  }
}

/** Apply one change to the counts until the server's figures arrive. */
function moveCount(stats, frame) {
  const row = (status) => {
    let found = stats.counts.find((entry) => entry.status === status);
    if (!found) {
      found = { status, count: 0, final: false };
      stats.counts.push(found);
    }
    return found;
  };
  if (frame.previous_status) {
    const before = row(frame.previous_status);
    before.count = Math.max(0, before.count - 1);
  } else {
    stats.total += 1;
  }
  row(frame.status).count += 1;
  stats.open = stats.counts.filter((entry) => !entry.final).reduce((n, e) => n + e.count, 0);
  stats.cursor = frame.id;
}

function renderStats(desk, stats) {
  const set = (selector, value) => {
    const element = desk.querySelector(selector);
    if (element) element.textContent = String(value);
  };
  set("[data-didit-total]", stats.total);
  set("[data-didit-open]", stats.open);
  set("[data-didit-median]", formatDuration(stats.median_seconds));
  set("[data-didit-decided]", stats.decided);

  const bars = desk.querySelector("[data-didit-bars]");
  if (!bars) return;
  const peak = Math.max(0, ...stats.counts.map((entry) => entry.count));
  const rows = stats.counts.map((entry) => {
    const item = document.createElement("li");
    item.className = "didit-bar";
    item.dataset.status = entry.status;
    const label = document.createElement("span");
    label.className = "didit-bar-label";
    label.textContent = entry.status;
    const track = document.createElementNS(SVG, "svg");
    track.setAttribute("class", "didit-bar-track");
    track.setAttribute("viewBox", "0 0 100 10");
    track.setAttribute("preserveAspectRatio", "none");
    track.setAttribute("aria-hidden", "true");
    track.setAttribute("focusable", "false");
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("height", "10");
    rect.setAttribute("width", String(peak ? Math.round((1000 * entry.count) / peak) / 10 : 0));
    track.append(rect);
    const count = document.createElement("span");
    count.className = "didit-bar-count";
    count.textContent = String(entry.count);
    item.append(label, track, count);
    return item;
  });
  bars.replaceChildren(...rows);
}
