// Open alarms, live: the alarm stream (server-sent events) gives a snapshot of the open alarms, then every
// change; the store keeps them and tells the page. Acting on an alarm (acknowledge, attending, resolve with an
// outcome) goes through the API; every board then hears the change on its own stream. What each alarm is about (its
// detail: a heart rate, minutes out of bed) is put in words by board.detail.js.
"use strict";

(function () {
  const { t, tCode, el, api } = window.EC;
  const RANK = { emergency: 0, urgent: 1, routine: 2, technical: 3 };
  const MARK = { emergency: "!!!", urgent: "!!", routine: "!", technical: "!" };
  const OPEN = new Set(["raised", "acknowledged", "attending"]);

  // Priority first, then the ones nobody has acknowledged, then the oldest (it has waited longest).
  function compare(a, b) {
    return (RANK[a.priority] - RANK[b.priority])
      || ((a.state === "raised" ? 0 : 1) - (b.state === "raised" ? 0 : 1))
      || (new Date(a.raised_at) - new Date(b.raised_at))
      || (a.id - b.id);
  }

  class AlarmStore {
    constructor() {
      this.alarms = new Map(); // id -> alarm, open ones only
      this.known = new Map(); // id -> latest version of every alarm seen since the page opened, closed ones too
      this.source = null;
      this.connected = false;
      this.listeners = [];
    }

    onChange(fn) { this.listeners.push(fn); }
    _emit(fresh) { for (const fn of this.listeners) fn(fresh); }

    open() { return [...this.alarms.values()].sort(compare); }

    // An alarm seen since the page opened (open or closed since), or undefined.
    seen(id) { return this.known.get(id); }

    // The top alarm per bed code.
    byBed() {
      const found = new Map();
      for (const alarm of this.open()) if (alarm.bed_code && !found.has(alarm.bed_code)) found.set(alarm.bed_code, alarm);
      return found;
    }

    // What the sound should play: the highest priority among alarms raised and not acknowledged.
    soundPattern() {
      const raised = this.open().filter((a) => a.state === "raised");
      if (raised.some((a) => a.priority === "emergency")) return "emergency";
      if (raised.some((a) => a.priority === "urgent")) return "urgent";
      return "off";
    }

    upsert(alarm) {
      const fresh = !this.known.has(alarm.id) && alarm.state === "raised";
      this.known.set(alarm.id, alarm);
      if (OPEN.has(alarm.state)) this.alarms.set(alarm.id, alarm);
      else this.alarms.delete(alarm.id);
      return fresh;
    }

    connect(onStatus) {
      const session = window.EC.session();
      if (!session) { window.location.assign("/login"); return; }
      const source = new EventSource("/api/v1/alarms/stream?token=" + encodeURIComponent(session.token));
      this.source = source;
      source.addEventListener("open", () => { this.connected = true; onStatus(true); });
      source.addEventListener("snapshot", (event) => {
        const list = JSON.parse(event.data);
        const first = this.known.size === 0;
        const fresh = [];
        this.alarms.clear();
        for (const alarm of list) if (this.upsert(alarm) && !first) fresh.push(alarm);
        if (first) for (const alarm of list) this.known.set(alarm.id, alarm);
        this._emit(fresh);
      });
      source.addEventListener("alarm", (event) => {
        const alarm = JSON.parse(event.data);
        const fresh = this.upsert(alarm);
        this._emit(fresh ? [alarm] : []);
      });
      source.addEventListener("error", async () => {
        this.connected = false;
        onStatus(false);
        if (source.readyState === EventSource.CLOSED) {
          // Refused (an expired session answers 401) or gone: check the session, then try again.
          try { await api("/api/v1/auth/me"); } catch (_) { return; }
          window.setTimeout(() => this.connect(onStatus), 3000);
        }
      });
    }

    async act(alarm, action, body) {
      const updated = await api("/api/v1/alarms/" + alarm.id + "/" + action, { method: "POST", body: body || { note: "" } });
      this.upsert(updated);
      this._emit([]);
      return updated;
    }
  }

  function kindText(alarm) { return tCode("kind", alarm.kind); }
  // The handover page uses the store without board.detail.js: there, no line.
  function detailText(alarm) { return window.BoardDetail ? window.BoardDetail.detailText(alarm) : ""; }
  function outcomeText(outcome) { return tCode("outcome", outcome); }

  function ageText(alarm) {
    return EC.fmtTime(alarm.raised_at) + " · " + EC.fmtAgo(alarm.raised_at);
  }

  // One alarm of the queue, with its actions. place(alarm) -> {where, who}.
  function alarmItem(alarm, place, onAction) {
    const { where, who } = place(alarm);
    const flashing = alarm.state !== "attending" ? " flash" : "";
    const actions = el("div", { class: "alarm-actions" },
      alarm.state === "raised" ? el("button", { type: "button", class: "btn primary", "data-action": "acknowledge", onclick: () => onAction(alarm, "acknowledge") }, t("action_acknowledge")) : null,
      alarm.state !== "attending" ? el("button", { type: "button", class: "btn", "data-action": "attend", onclick: () => onAction(alarm, "attend") }, t("action_attend")) : null,
      el("button", { type: "button", class: "btn", "data-action": "resolve", onclick: () => onAction(alarm, "resolve") }, t("action_resolve")),
    );
    const detail = detailText(alarm);
    const label = [t("prio." + alarm.priority), kindText(alarm), detail, where, who, tCode("state", alarm.state)].filter(Boolean).join(", ");
    return el("li", { class: "alarm prio-border-" + alarm.priority, "data-alarm-id": String(alarm.id), "data-state": alarm.state, "data-priority": alarm.priority, "aria-label": label },
      el("div", { class: "alarm-head prio-" + alarm.priority + flashing },
        el("span", { class: "prio-mark", "aria-hidden": "true" }, MARK[alarm.priority]),
        el("span", { class: "prio-name" }, t("prio." + alarm.priority)),
        el("strong", { class: "kind" }, kindText(alarm)),
        alarm.repeat_count > 1 ? el("span", { class: "repeat" }, t("repeats", { n: alarm.repeat_count })) : null,
      ),
      el("div", { class: "alarm-body" },
        detail ? el("div", { class: "alarm-detail" }, detail) : null,
        el("div", { class: "alarm-where" }, where, who ? el("span", { class: "who" }, " · " + who) : null),
        el("div", { class: "alarm-time" }, ageText(alarm), " ", el("span", { class: "badge state-" + alarm.state }, tCode("state", alarm.state))),
        actions,
      ),
    );
  }

  // The resolve dialog: an outcome is required; "other" takes a text of its own. The choice goes as the outcome's
  // code every time (regulators count false alarms by it, migration 0015), with the typed text for "other", so
  // an alarm closed as "other" is counted as closed with a code rather than left not known.
  function resolveDialog(store, describe, onError) {
    const dialog = document.getElementById("resolve-dialog");
    const form = document.getElementById("resolve-form");
    const other = document.getElementById("resolve-other");
    const error = document.getElementById("resolve-error");
    let current = null;
    let opener = null;
    form.addEventListener("change", () => {
      other.disabled = form.outcome.value !== "other";
      if (!other.disabled) other.focus();
    });
    document.getElementById("resolve-cancel").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { if (opener && document.contains(opener)) opener.focus(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const choice = form.outcome.value;
      const outcome = choice === "other" ? other.value.trim() : choice;
      if (!outcome) {
        error.textContent = t("resolve_need_outcome");
        error.hidden = false;
        return;
      }
      try {
        await store.act(current, "resolve", { outcome, outcome_code: choice, note: form.note.value.trim() });
        dialog.close();
      } catch (e) {
        error.textContent = e.status === 409 ? t("alarm_changed") : t("error_load", { reason: e.message });
        error.hidden = false;
        onError(e);
      }
    });
    return (alarm, from) => {
      current = alarm;
      opener = from || document.activeElement;
      form.reset();
      other.disabled = true;
      error.hidden = true;
      document.getElementById("resolve-what").textContent = describe(alarm);
      const detail = document.getElementById("resolve-detail");
      detail.textContent = detailText(alarm);
      detail.hidden = !detail.textContent;
      dialog.showModal();
      form.querySelector("input[name=outcome]").focus();
    };
  }

  window.BoardAlarms = { AlarmStore, alarmItem, resolveDialog, compare, kindText, detailText, outcomeText, MARK };
})();
