/**
 * The live connection to didit_channels' socket, shared by the status page and the desk.
 *
 * It asks for a fresh single-use ticket before every connection attempt, passes it as a
 * WebSocket subprotocol (never in the URL, so it stays out of logs), reconnects with
 * exponential backoff and jitter, and after every reconnect asks the server to `resume`
 * from the last event id it saw, so a change sent while the socket was down still arrives.
 * Status frames whose id is not above that cursor are dropped: each change is delivered
 * to the page once.
 *
 *   const live = new LiveConnection({ ticketsUrl, csrfToken, cursor });
 *   live.addEventListener("status", (event) => show(event.detail));
 *   live.addEventListener("state", (event) => indicate(event.detail.state));
 *   live.start();
 *
 * Events: "state" ({state, reason, retryIn}), "hello", "snapshot", "status", "resumed",
 * "servererror" (each with the frame as detail). States: "connecting", "live", "waiting"
 * (a retry is scheduled), "offline" (the browser says there is no network) and "stopped"
 * (reason "revoked": the server closed with 4003; "signed-out": the ticket request was
 * refused, or the server closed with 4003 "signed out", so the login session is gone;
 * "stopped": stop() was called).
 *
 * Caveat: the server guarantees ids increase in the order one connection sees them; the
 * cursor logic relies on it and does not reorder frames.
 */

export const PROTOCOL = "didit.v1";
export const CLOSE_TICKET = 4001;
export const CLOSE_REVOKED = 4003;
export const CLOSE_TOO_MANY = 4008;
export const SIGNED_OUT_REASON = "signed out";

class TicketError extends Error {
  constructor(message, { fatal = false, reason = "", retryAfter = 0 } = {}) {
    super(message);
    this.fatal = fatal;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

export class LiveConnection extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.ticketsUrl  POST here (session cookie + CSRF header) for a ticket.
   * @param {string} options.csrfToken   Sent as X-CSRFToken.
   * @param {number|null} [options.cursor]  Highest event id the page already shows.
   */
  constructor({
    ticketsUrl,
    csrfToken,
    cursor = null,
    baseDelay = 1000,
    maxDelay = 30000,
    heartbeatInterval = 25000,
    heartbeatTimeout = 10000,
  }) {
    super();
    this.ticketsUrl = ticketsUrl;
    this.csrfToken = csrfToken;
    this.cursor = Number.isInteger(cursor) ? cursor : null;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.heartbeatInterval = heartbeatInterval;
    this.heartbeatTimeout = heartbeatTimeout;
    this.state = "idle";
    this.audiences = [];
    this.attempt = 0;
    this.socket = null;
    this.connecting = false;
    this.stopped = false;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.deadlineTimer = null;
    this.onOnline = () => this.retryNow();
    this.onOffline = () => this.checkAlive();
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connect();
  }

  stop(reason = "stopped") {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
    this.setState("stopped", { reason });
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  // --- connecting ---------------------------------------------------------------

  async connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.stopped || this.socket || this.connecting) return;
    this.connecting = true;
    this.setState("connecting");
    let ticket;
    try {
      ticket = await this.requestTicket();
    } catch (error) {
      this.connecting = false;
      if (error.fatal) this.stop(error.reason);
      else this.scheduleRetry({ minDelay: error.retryAfter });
      return;
    }
    this.connecting = false;
    if (this.stopped) return;
    let socket;
    try {
      socket = new WebSocket(this.socketUrl(ticket.url), [PROTOCOL, `ticket.${ticket.ticket}`]);
    } catch (error) {
      console.warn("didit: could not open the socket", error);
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (event) => this.onMessage(socket, event));
    socket.addEventListener("close", (event) => this.onClose(socket, event.code, event.reason));
  }

  async requestTicket() {
    let response;
    try {
      response = await fetch(this.ticketsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": this.csrfToken, Accept: "application/json" },
      });
    } catch (error) {
      throw new TicketError(`ticket request failed: ${error.message}`);
    }
    if (response.status === 401 || response.status === 403) {
      throw new TicketError("ticket refused", { fatal: true, reason: "signed-out" });
    }
    if (!response.ok) {
      const seconds = Number(response.headers.get("Retry-After"));
      throw new TicketError(`ticket request answered ${response.status}`, {
        retryAfter: Number.isFinite(seconds) ? seconds * 1000 : 0,
      });
    }
    const body = await response.json().catch(() => null);
    if (!body || typeof body.ticket !== "string") throw new TicketError("malformed ticket answer");
    return body;
  }

  socketUrl(path) {
    const url = new URL(path || "/ws/didit/", window.location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    else if (url.protocol === "https:") url.protocol = "wss:";
    return url.href;
  }

  // --- frames ----------------------------------------------------------------------

  onMessage(socket, event) {
    if (socket !== this.socket) return;
    // Any frame proves the connection is alive.
    clearTimeout(this.deadlineTimer);
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    switch (frame.type) {
      case "hello":
        this.attempt = 0;
        this.audiences = Array.isArray(frame.audiences) ? frame.audiences : [];
        if (this.cursor === null) {
          this.cursor = Number.isInteger(frame.cursor) ? frame.cursor : 0;
        } else {
          // Whatever was sent while we were away (or since the page was rendered).
          this.send({ type: "resume", after: this.cursor });
        }
        this.startHeartbeat();
        this.setState("live");
        this.emit("hello", frame);
        break;
      case "status":
        if (!Number.isInteger(frame.id)) return;
        if (this.cursor !== null && frame.id <= this.cursor) return;
        this.cursor = frame.id;
        this.emit("status", frame);
        break;
      case "resumed":
        if (Number.isInteger(frame.cursor) && (this.cursor === null || frame.cursor > this.cursor)) {
          this.cursor = frame.cursor;
        }
        this.emit("resumed", frame);
        break;
      case "snapshot":
        this.emit("snapshot", frame);
        break;
      case "error":
        console.warn("didit: server error frame", frame.code, frame.detail);
        this.emit("servererror", frame);
        break;
      default:
        break;
    }
  }

  onClose(socket, code, reason = "") {
    if (socket !== this.socket) return;
    this.socket = null;
    this.stopHeartbeat();
    if (this.stopped) return;
    if (code === CLOSE_REVOKED) {
      // The reason tells a logout (of the login session this page's tickets came from)
      // from access withdrawn.
      this.stop(reason === SIGNED_OUT_REASON ? "signed-out" : "revoked");
    } else if (code === CLOSE_TOO_MANY) {
      // Another tab holds the sockets; back off faster than for a network blip.
      this.attempt += 2;
      this.scheduleRetry({ reason: "too-many" });
    } else {
      // 4001 (ticket refused), 1009, the server's connection age limit, network loss:
      // all retried with a fresh ticket.
      this.scheduleRetry({ reason: code === CLOSE_TICKET ? "ticket" : "" });
    }
  }

  // --- retries -----------------------------------------------------------------------

  delayFor(attempt) {
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** Math.min(attempt, 16));
    // "Equal jitter": never zero, and many clients do not come back in lockstep.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  scheduleRetry({ minDelay = 0, reason = "" } = {}) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = Math.max(minDelay, this.delayFor(this.attempt));
    this.attempt += 1;
    const state = navigator.onLine === false ? "offline" : "waiting";
    this.setState(state, { reason, retryIn: delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  retryNow() {
    if (this.stopped || this.socket || this.connecting) return;
    this.attempt = 0;
    this.connect();
  }

  // --- liveness --------------------------------------------------------------------

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.checkAlive(), this.heartbeatInterval);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.deadlineTimer);
    this.heartbeatTimer = null;
    this.deadlineTimer = null;
  }

  /** Ping; a socket that stays silent until the deadline is half-open, so drop it. */
  checkAlive() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this.send({ type: "ping" });
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.dropSocket(), this.heartbeatTimeout);
  }

  dropSocket() {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    this.stopHeartbeat();
    socket.close(1000);
    this.scheduleRetry({ reason: "timeout" });
  }

  // --- events ----------------------------------------------------------------------

  setState(state, { reason = "", retryIn = 0 } = {}) {
    this.state = state;
    this.emit("state", { state, reason, retryIn });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
