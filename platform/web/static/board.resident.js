// A resident's page (staff, and the resident's own family): who and where, the state now, heart and breathing
// rate from the bed sensor (uPlot, with the resident's alarm limits), and every alarm with how it was handled.
// A resident outside the user's scope is "not found" to the API: the page then shows that and nothing else.
"use strict";

(async function () {
  const { t, tCode, el, api } = window.EC;
  const me = await EC.start({});
  const match = window.location.pathname.match(/^\/resident\/(\d+)$/);
  const id = match ? Number(match[1]) : 0;
  const nav = document.getElementById("nav");
  const staff = ["staff", "head", "admin"].includes(me.role);
  nav.replaceChildren(...(staff
    ? [el("a", { href: "/board", "data-i18n": "nav_board" }, t("nav_board")), el("a", { href: "/handover", "data-i18n": "nav_handover" }, t("nav_handover"))]
    : me.role === "family" ? [el("a", { href: "/family", "data-i18n": "nav_family" }, t("nav_family"))]
      : [el("a", { href: "/regulator", "data-i18n": "nav_regulator" }, t("nav_regulator"))]));

  const state = { resident: null, status: null, vitals: null, alarms: [], hours: 6, charts: [] };

  function fail(e) {
    document.getElementById("content").hidden = true;
    EC.showError("page-error", e);
  }

  try {
    state.resident = await api("/api/v1/residents/" + id);
  } catch (e) {
    fail(e);
    return;
  }

  function renderWho() {
    const r = state.resident;
    document.getElementById("resident-name").textContent = r.name;
    document.title = r.name + " · " + t("app_name");
    document.getElementById("resident-facts").textContent = [
      t("age", { n: r.age }), tCode("sex", r.sex), r.bed_label ? t("bed_label", { label: r.bed_label }) : t("no_bed"),
      t("fall_risk", { level: tCode("risk", r.fall_risk) }), tCode("capability", r.capability),
    ].join(" · ");
  }

  function stateText(s) {
    switch (s.state) {
      case "in_bed": return t("state_in_bed");
      case "out_of_bed":
        return s.out_since ? t("state_out_since", { m: EC.fmtMinutes((Date.now() - new Date(s.out_since)) / 60000), at: EC.fmtTime(s.out_since) })
          : t("out_over", { h: 12 });
      case "in_hospital": return t("state_in_hospital");
      case "discharged": return t("state_discharged");
      case "deceased": return t("state_deceased");
      case "no_bed": return t("state_no_bed");
      default: return s.has_bed_sensor ? t("presence_unknown") : t("no_bed_sensor");
    }
  }

  function renderStatus() {
    const s = state.status;
    if (!s) return;
    const line = document.getElementById("resident-state");
    line.className = "state-line " + s.state;
    line.textContent = stateText(s) + (s.open_alarms.length ? " · " + t("open_alarms", { n: s.open_alarms.length }) : "");
    document.getElementById("resident-seen").textContent = (s.has_bed_sensor ? t("last_reading", { ago: EC.fmtAgo(s.last_reading_at), at: EC.fmtDateTime(s.last_reading_at) }) : "")
      + (s.device_offline ? " · ⚠ " + t("device_offline_note") : "");
  }

  async function loadStatus() {
    try { state.status = await api("/api/v1/residents/" + id + "/status"); renderStatus(); } catch (e) { fail(e); }
  }

  // --- charts -------------------------------------------------------------------------------------------
  function chartWidth() { return Math.max(280, document.getElementById("chart-hr").clientWidth || 600); }

  function chart(target, label, unit, avg, lo, hi, limits, colour) {
    const v = state.vitals;
    const n = v.t.length;
    const start = new Date(v.start).getTime() / 1000;
    const end = new Date(v.end).getTime() / 1000;
    const long = end - start > 86400 + 60;
    const tick = (s) => (long ? EC.fmtDateTime : EC.fmtTime)(new Date(s * 1000).toISOString());
    const value = (u, x) => (x === null || x === undefined ? "—" : x.toFixed(0));
    const series = [
      { label: t("time"), value: (u, x) => (x === null || x === undefined ? "—" : EC.fmtDateTime(new Date(x * 1000).toISOString())) },
      { label: label, stroke: colour, width: 2.5, spanGaps: false, value, points: { show: false } },
    ];
    const data = [v.t, avg];
    if (v.bucket_s) {
      series.push({ label: t("series_min"), stroke: colour, width: 1, dash: [2, 3], value, points: { show: false } },
        { label: t("series_max"), stroke: colour, width: 1, dash: [2, 3], value, points: { show: false } });
      data.push(lo, hi);
    }
    series.push({ label: t("series_limit_low"), stroke: "#333", width: 1.5, dash: [8, 6], points: { show: false }, value },
      { label: t("series_limit_high"), stroke: "#333", width: 1.5, dash: [8, 6], points: { show: false }, value });
    data.push(new Array(n).fill(limits[0]), new Array(n).fill(limits[1]));
    const axisFont = "15px 'Noto Sans CJK SC', sans-serif";
    const opts = {
      width: chartWidth(), height: 260,
      scales: { x: { time: true, range: () => [start, end] }, y: { range: (u, lo2, hi2) => [Math.min(lo2, limits[0]) - 5, Math.max(hi2, limits[1]) + 5] } },
      series,
      axes: [
        { stroke: "#1b1f24", font: axisFont, space: long ? 130 : 80, values: (u, splits) => splits.map(tick) },
        { label: unit, stroke: "#1b1f24", font: axisFont, labelFont: "bold " + axisFont },
      ],
    };
    const node = document.getElementById(target);
    node.replaceChildren();
    return new uPlot(opts, data, node);
  }

  function renderCharts() {
    for (const c of state.charts) c.destroy();
    state.charts = [];
    const v = state.vitals;
    if (!v) return;
    const r = state.resident;
    const empty = v.t.length === 0 || (v.hr.every((x) => x === null) && v.rr.every((x) => x === null));
    document.getElementById("vitals-empty").hidden = !empty;
    document.getElementById("vitals-note").textContent = v.bucket_s ? t("vitals_bucketed", { s: EC.fmtSeconds(v.bucket_s) }) : t("vitals_raw");
    if (empty) { document.getElementById("chart-hr").replaceChildren(); document.getElementById("chart-rr").replaceChildren(); return; }
    state.charts.push(chart("chart-hr", t("heart_rate"), t("per_minute"), v.hr, v.hr_min, v.hr_max, [r.heart_rate_min, r.heart_rate_max], "#c62828"));
    state.charts.push(chart("chart-rr", t("resp_rate"), t("per_minute"), v.rr, v.rr_min, v.rr_max, [r.resp_rate_min, r.resp_rate_max], "#0b57d0"));
  }

  async function loadVitals() {
    try { state.vitals = await api("/api/v1/residents/" + id + "/vitals?hours=" + state.hours); renderCharts(); } catch (e) { fail(e); }
  }

  document.getElementById("ranges").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-hours]");
    if (!button) return;
    state.hours = Number(button.dataset.hours);
    for (const b of document.querySelectorAll("#ranges button")) b.setAttribute("aria-pressed", b === button ? "true" : "false");
    loadVitals();
  });
  window.addEventListener("resize", () => { for (const c of state.charts) c.setSize({ width: chartWidth(), height: 260 }); });

  // --- alarm history -------------------------------------------------------------------------------------
  function delay(from, to) {
    if (!to) return "—";
    return EC.fmtTime(to) + " (" + EC.fmtSeconds((new Date(to) - new Date(from)) / 1000) + ")";
  }

  function renderHistory() {
    const body = document.querySelector("#history tbody");
    const label = (key) => ({ "data-label": t(key) }); // shown before each cell when the table is stacked (phones)
    body.replaceChildren(...state.alarms.map((a) => el("tr", { "data-alarm-id": String(a.id) },
      el("td", label("col_raised"), EC.fmtDate(a.raised_at) + " " + EC.fmtTime(a.raised_at)),
      el("td", label("col_alarm"), el("span", { class: "badge prio-" + a.priority }, window.BoardAlarmsMark[a.priority] + " " + t("prio." + a.priority)), " ", tCode("kind", a.kind)),
      el("td", label("col_state"), tCode("state", a.state)),
      el("td", label("col_acknowledged"), delay(a.raised_at, a.acknowledged_at)),
      el("td", label("col_attending"), delay(a.raised_at, a.attending_at)),
      el("td", label("col_closed"), a.closed_at ? EC.fmtTime(a.closed_at) : "—"),
      el("td", { ...label("col_outcome"), class: "outcome" }, tCode("outcome", a.outcome) || "—"),
    )));
    document.getElementById("history-empty").hidden = state.alarms.length > 0;
  }

  async function loadAlarms() {
    try { state.alarms = await api("/api/v1/residents/" + id + "/alarms?limit=100"); renderHistory(); } catch (e) { fail(e); }
  }

  window.BoardAlarmsMark = { emergency: "!!!", urgent: "!!", routine: "!", technical: "!" };
  renderWho();
  document.getElementById("content").hidden = false;
  EC.onLang(() => { renderWho(); renderStatus(); renderCharts(); renderHistory(); });
  await Promise.all([loadStatus(), loadVitals(), loadAlarms()]);
  window.setInterval(loadStatus, 30000);
  window.setInterval(() => { loadVitals(); loadAlarms(); }, 60000);
  document.body.dataset.ready = "true";
})();
