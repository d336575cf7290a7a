// Notifications about the home's alarms that reached nobody (GET /api/v1/me/notifications/undelivered): given up
// after the sender's max_attempts, or still failing past them. The board shows them above everything else, one
// entry per alarm with who was not told and why, so that a nurse can telephone the family member or colleague;
// hidden when there is none. The answer holds no address (user name, channel kind and reason), so none is shown.
"use strict";

(function () {
  const { t, tCode, el, api } = window.EC;
  const { MARK } = window.BoardAlarms;
  const NO_CHANNEL = "no active channel"; // the sender's reason when the person has no channel left

  // The rows grouped by alarm, in the answer's order (newest first).
  function byAlarm(rows) {
    const groups = new Map();
    for (const row of rows) {
      if (!groups.has(row.alarm_id)) groups.set(row.alarm_id, { alarmId: row.alarm_id, bedCode: row.bed_code, kind: row.alarm_kind, priority: row.priority, rows: [] });
      groups.get(row.alarm_id).rows.push(row);
    }
    return [...groups.values()];
  }

  function reason(row) {
    if (!row.last_error) return t("undelivered_no_reason");
    return row.last_error === NO_CHANNEL ? t("undelivered_no_channel") : row.last_error;
  }

  function status(row) {
    if (row.state === "failed") return t("undelivered_given_up", { n: row.attempts });
    return row.next_try ? t("undelivered_retrying_at", { n: row.attempts, time: EC.fmtTime(row.next_try) }) : t("undelivered_retrying", { n: row.attempts });
  }

  // where(alarmId, bedCode) -> {where, who} of the alarm (from the board's own copy of it, else its bed), or null;
  // mine(row): whether the row is about this board's home (an admin's answer holds every home's).
  class Undelivered {
    constructor(where, mine) {
      this.where = where;
      this.mine = mine;
      this.rows = [];
      this.error = null;
      this.ids = null; // the rows' ids at the last load; null before the first
      this.section = document.getElementById("undelivered");
      this.list = document.getElementById("undelivered-list");
    }

    async load() {
      try {
        this.rows = (await api("/api/v1/me/notifications/undelivered")).filter(this.mine);
        this.error = null;
      } catch (e) {
        this.error = e; // the last list stays: a failed check does not mean everyone was told
      }
      const fresh = this.ids === null ? [] : this.rows.filter((r) => !this.ids.has(r.id));
      this.ids = new Set(this.rows.map((r) => r.id));
      this.render();
      for (const group of byAlarm(fresh)) EC.announce(this.headline(group));
    }

    alarmText(group) {
      const found = this.where(group.alarmId, group.bedCode);
      const place = found ? [found.where, found.who] : [t("alarm_number", { id: group.alarmId })];
      return [t("prio." + group.priority), tCode("kind", group.kind), ...place].filter(Boolean).join(" · ");
    }

    headline(group) {
      const n = new Set(group.rows.map((r) => r.username)).size;
      return t(n === 1 ? "undelivered_one" : "undelivered_many", { n, alarm: this.alarmText(group) });
    }

    recipient(row) {
      return el("li", { class: "undelivered-who", "data-notification-id": String(row.id), "data-state": row.state },
        el("strong", {}, row.username), " (" + tCode("role", row.role) + ") · ",
        tCode("notify_event", row.event) + " · " + EC.fmtDateTime(row.created_at) + " · ",
        el("span", { class: "undelivered-reason" }, reason(row)), " · " + status(row));
    }

    render() {
      const groups = byAlarm(this.rows);
      this.list.replaceChildren(...groups.map((g) => el("li", { class: "undelivered-alarm", "data-alarm-id": String(g.alarmId) },
        el("p", { class: "undelivered-head" }, el("span", { class: "prio-mark", "aria-hidden": "true" }, MARK[g.priority] || "!"), " ", this.headline(g)),
        el("ul", { class: "undelivered-people" }, ...g.rows.map((r) => this.recipient(r))),
      )));
      const error = document.getElementById("undelivered-error");
      error.hidden = !this.error;
      if (this.error) error.textContent = t("undelivered_error", { reason: this.error.message });
      this.section.hidden = groups.length === 0 && !this.error;
      document.getElementById("undelivered-count").textContent = groups.length ? t("undelivered_count", { n: this.rows.length }) : "";
    }
  }

  window.BoardUndelivered = { Undelivered };
})();
