// The shift handover: open alarms (live from the alarm stream), residents out of bed with how long, residents
// in hospital, and devices to fix (offline, or with an open fault), from the board endpoint; and the visits to
// elders living alone due within a week or overdue (GET /api/v1/visits/due), most overdue first.
"use strict";

(async function () {
  const { t, tCode, el, api } = window.EC;
  const { AlarmStore, MARK } = window.BoardAlarms;
  const me = await EC.start({ roles: ["staff", "head", "admin"] });
  const params = new URLSearchParams(window.location.search);
  const institutionId = Number(params.get("institution")) || me.institution_id;
  const state = { board: null, names: new Map(), visits: [] };
  const store = new AlarmStore();

  function bedOf(code) { return state.board ? state.board.beds.find((b) => b.bed_code === code) : undefined; }
  function whereOf(bed) {
    const who = bed.resident_id ? state.names.get(bed.resident_id) || bed.person_code : "";
    const floor = bed.floor ? (bed.building ? bed.building + " " : "") + bed.floor + " · " : "";
    return floor + t("bed_label", { label: bed.label || bed.bed_code }) + (who ? " · " + who : "");
  }
  function fill(table, rows, count) {
    document.querySelector("#" + table + " tbody").replaceChildren(...rows);
    const section = document.getElementById(table).closest("section");
    section.querySelector(".none").hidden = rows.length > 0;
    section.querySelector(".table-wrap").hidden = rows.length === 0;
    document.getElementById(count).textContent = "(" + rows.length + ")";
  }

  function renderAlarms() {
    const rows = store.open().map((a) => {
      const bed = a.bed_code ? bedOf(a.bed_code) : undefined;
      const where = bed ? whereOf(bed) : a.device_code ? t("device_code", { code: a.device_code }) : t("whole_home");
      return el("tr", { "data-alarm-id": String(a.id), "data-state": a.state },
        el("td", {}, el("span", { class: "badge prio-" + a.priority }, MARK[a.priority] + " " + t("prio." + a.priority))),
        el("td", {}, tCode("kind", a.kind)), el("td", {}, where),
        el("td", {}, EC.fmtDateTime(a.raised_at) + " (" + EC.fmtAgo(a.raised_at) + ")"), el("td", {}, tCode("state", a.state)));
    });
    fill("t-alarms", rows, "n-alarms");
  }

  function renderBoard() {
    const b = state.board;
    if (!b) return;
    document.getElementById("home-name").textContent = b.institution_name;
    document.getElementById("generated").textContent = t("generated_at", { at: EC.fmtDateTime(b.generated_at) });
    const out = b.beds.filter((x) => x.resident_id && !x.in_hospital && x.presence === "out_of_bed")
      .sort((x, y) => (x.out_since ? new Date(x.out_since) : 0) - (y.out_since ? new Date(y.out_since) : 0));
    fill("t-out", out.map((x) => el("tr", {},
      el("td", {}, el("a", { href: "/resident/" + x.resident_id }, whereOf(x))),
      el("td", {}, x.out_since ? EC.fmtTime(x.out_since) : t("out_over", { h: b.out_window_hours })),
      el("td", {}, x.out_since ? EC.fmtMinutes((Date.now() - new Date(x.out_since)) / 60000) : "—"),
      el("td", {}, tCode("risk", x.fall_risk)))), "n-out");
    const away = b.beds.filter((x) => x.resident_id && x.in_hospital);
    document.getElementById("l-away").replaceChildren(...away.map((x) => el("li", {}, whereOf(x))));
    document.getElementById("l-away").closest("section").querySelector(".none").hidden = away.length > 0;
    document.getElementById("n-away").textContent = "(" + away.length + ")";
    const devices = [];
    for (const bed of b.beds) {
      for (const d of bed.devices) {
        if (!d.offline && d.faults.length === 0) continue;
        const problems = [...new Set([...(d.offline ? ["device_offline"] : []), ...d.faults])].map((k) => tCode("kind", k)).join("、");
        devices.push(el("tr", {}, el("td", {}, d.code + " (" + tCode("device_kind", d.kind) + ")"), el("td", {}, whereOf(bed)),
          el("td", {}, problems), el("td", {}, d.last_seen ? EC.fmtDateTime(d.last_seen) + " (" + EC.fmtAgo(d.last_seen) + ")" : t("never"))));
      }
    }
    fill("t-devices", devices, "n-devices");
  }

  function renderVisits() {
    fill("t-visits", state.visits.map((v) => el("tr", { "data-resident-id": String(v.resident_id), "data-kind": v.kind },
      el("td", {}, el("a", { href: "/resident/" + v.resident_id }, v.name + " (" + v.person_code + ")")),
      el("td", {}, tCode("visit_kind", v.kind)),
      el("td", {}, v.last_visit ? EC.fmtDate(v.last_visit) : t("never_visited")),
      el("td", {}, EC.fmtDate(v.due)),
      el("td", { class: v.days_overdue > 0 ? "overdue" : "" }, v.days_overdue > 0 ? t("overdue_days", { n: v.days_overdue }) : t("not_overdue")))),
    "n-visits");
  }

  async function load() {
    try {
      const [board, visits, residents] = await Promise.all([
        api("/api/v1/institutions/" + institutionId + "/board"),
        api("/api/v1/visits/due"),
        state.names.size ? Promise.resolve(null) : api("/api/v1/institutions/" + institutionId + "/residents?status=admitted&limit=500"),
      ]);
      state.board = board;
      state.visits = visits.filter((v) => v.institution_id === institutionId); // an admin's answer holds every home's
      if (residents) for (const r of residents) state.names.set(r.id, r.name);
      renderBoard();
      renderAlarms();
      renderVisits();
    } catch (e) {
      EC.showError("page-error", e);
    }
  }

  document.getElementById("print").addEventListener("click", () => window.print());
  store.onChange(() => renderAlarms());
  EC.onLang(() => { renderBoard(); renderAlarms(); renderVisits(); });
  await load();
  store.connect(() => {});
  window.setInterval(load, 30000);
  document.body.dataset.ready = "true";
})();
