// Shared by the regulator's pages: the period (remembered), the supervision figures' columns and the visits'
// coverage columns with how each is shown and judged against its target, and the wording of the reasons a home
// needs attention.
"use strict";

(function () {
  const { t } = window.EC;
  const PERIOD_KEY = "eldercare.regulator.period";

  function defaultPeriod() {
    const today = new Date();
    const start = new Date(today.getTime() - 29 * 86400000);
    return { from: EC.localDay(start), to: EC.localDay(today), region: "" };
  }

  function period() {
    const params = new URLSearchParams(window.location.search);
    let saved = null;
    try { saved = JSON.parse(window.sessionStorage.getItem(PERIOD_KEY) || "null"); } catch (_) { saved = null; }
    const base = saved || defaultPeriod();
    return { from: params.get("from") || base.from, to: params.get("to") || base.to, region: params.get("region") || base.region || "" };
  }

  function savePeriod(p) { window.sessionStorage.setItem(PERIOD_KEY, JSON.stringify(p)); }

  function figuresQuery(p, extra) {
    const q = new URLSearchParams({ from: p.from, to: p.to });
    if (p.region) q.set("region", p.region);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, String(v));
    return q.toString();
  }

  const pct = (v) => EC.fmtPercent(v);
  const int = (v) => (v === null || v === undefined ? "—" : String(v));
  const sec = (v) => EC.fmtSeconds(v);
  const num = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(1));
  // False alarms are counted among the alarms closed with an outcome code (migration 0015): with none, the count
  // and the rate are not known (not zero, not a dash that reads as "nothing").
  const coded = (row) => Boolean(row && row.closed_with_code > 0);
  const falseAlarms = (v, row) => (coded(row) ? int(v) : t("not_known"));
  const falseAlarmRate = (v, row) => (coded(row) && v !== null && v !== undefined ? pct(v) : t("not_known"));

  // key: field of a Figures row (credit: the score in force); fmt(value, row); judge: "bad" / "good" / "";
  // value(row): what the column sorts by, when not the field itself (null: always last).
  const COLUMNS = [
    { key: "institution_name", label: "col_home", fmt: (v) => v || "—", text: true },
    { key: "region_code", label: "col_region", fmt: (v) => v || "—", text: true },
    { key: "beds", label: "col_beds", fmt: int },
    { key: "occupancy", label: "col_occupancy", fmt: pct },
    { key: "nursing_share", label: "col_nursing_share", fmt: pct, judge: (v, row) => (row.nursing_target_met === false ? "bad" : row.nursing_target_met ? "good" : "") },
    { key: "device_online_rate", label: "col_online", fmt: pct, judge: (v) => (v !== null && v < 0.95 ? "bad" : "") },
    { key: "alarms_for_people", label: "col_alarms", fmt: int },
    { key: "median_s_to_acknowledge", label: "col_ack_median", fmt: sec },
    { key: "p90_s_to_acknowledge", label: "col_ack_p90", fmt: sec, judge: (v) => (v !== null && v > 60 ? "bad" : "") },
    { key: "unacknowledged_over_5_min", label: "col_unacked", fmt: int, judge: (v) => (v > 0 ? "bad" : "") },
    { key: "falls", label: "col_falls", fmt: int },
    { key: "false_alarms", label: "col_false_alarms", fmt: falseAlarms, value: (row) => (coded(row) ? row.false_alarms : null) },
    { key: "false_alarm_rate", label: "col_false_alarm_rate", fmt: falseAlarmRate },
    { key: "night_round_coverage", label: "col_rounds", fmt: pct, judge: (v) => (v !== null && v < 0.9 ? "bad" : "") },
    { key: "credit", label: "col_credit", fmt: num, judge: (v, row) => (row.blacklisted ? "bad" : "") },
  ];

  // Visits to elders living alone, a home's row as the region page's table shows it and as a home's drill-down does:
  // key subjects visited in every month, general ones within the year (docs/supervision.md); both targets 100%.
  // Nobody of a kind: "—" (a rate of nobody is not 0%), neither good nor bad.
  function visitJudge(rate, target) {
    if (rate === null || rate === undefined) return "";
    return rate < target ? "bad" : "good";
  }
  const visited = (covered, total) => (total > 0 ? int(covered) + "/" + int(total) : "—");
  const VISIT_COLUMNS = [
    { key: "living_alone", label: "col_living_alone", fmt: (c) => int(c.living_alone) },
    { key: "key_visited", label: "col_key_visited", fmt: (c) => visited(c.key_visited_monthly, c.key_subjects) },
    { key: "key_coverage", label: "col_key_coverage", fmt: (c) => pct(c.key_coverage), judge: (c) => visitJudge(c.key_coverage, c.key_target) },
    { key: "general_visited", label: "col_general_visited", fmt: (c) => visited(c.general_visited_yearly, c.general_subjects) },
    { key: "general_coverage", label: "col_general_coverage", fmt: (c) => pct(c.general_coverage), judge: (c) => visitJudge(c.general_coverage, c.general_target) },
  ];

  function visitCells(c) {
    const { el } = window.EC;
    return VISIT_COLUMNS.map((col) => {
      const judged = col.judge ? col.judge(c) : "";
      return el("td", { class: ["num", judged].filter(Boolean).join(" "), "data-key": col.key }, col.fmt(c) + (judged === "bad" ? " ⚠" : ""));
    });
  }

  const REASON_FORMAT = {
    devices_offline: pct, night_rounds_missing: pct, nursing_share_below_target: pct,
    slow_acknowledgement: sec, slow_attendance: sec,
  };

  function reasonText(reason) {
    const fmt = REASON_FORMAT[reason.code] || ((v) => String(Math.round(v)));
    const key = "reason." + reason.code;
    const text = t(key, { v: fmt(reason.value) });
    return text === key ? reason.message : text;
  }

  // A credit score term's rule in the page's language; the formula's own (English) words when the catalogue does
  // not have the term (tests/supervision/test_credit.py keeps the English entries equal to the formula's).
  function termRule(term) {
    const key = "term_rule." + term.term;
    const text = t(key);
    return text === key ? term.rule : text;
  }

  // For the map's markers: bad (red) when blacklisted or when calls for help go unanswered or are answered
  // slowly; watch (yellow) for any other reason to look at the home; good (green) when there is none.
  const URGENT_REASONS = new Set(["credit_blacklisted", "unacknowledged_over_5_min", "slow_acknowledgement", "slow_attendance", "alarms_open_at_end"]);
  function standing(attention, blacklisted) {
    if (blacklisted || (attention && attention.reasons.some((r) => URGENT_REASONS.has(r.code)))) return "bad";
    return attention ? "watch" : "good";
  }

  // Subsidy verification (issue 9): its totals per home for the month the period ends in, when that part of the
  // platform is there; until then the section says that it is not built yet (the API answers "Not Found").
  const yuan = (v) => (v === null || v === undefined ? "—" : "¥" + Number(v).toLocaleString(EC.lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  const SUBSIDY_COLUMNS = [
    ["institution_name", "col_home", (v) => v], ["lines", "col_lines", int], ["verified", "col_verified", int],
    ["partly_verified", "col_partly", int], ["rejected", "col_rejected", int], ["manual_check", "col_manual", int],
    ["claimed_yuan", "col_claimed", yuan], ["payable_yuan", "col_payable", yuan], ["withheld_yuan", "col_withheld", yuan],
  ];

  // Claims are made for a month after it has ended, so the subsidy section shows the last month that has
  // ended by the period's end: the month of `to` when `to` is its last day, else the month before.
  function claimMonth(to) {
    const day = new Date(to + "T00:00:00Z");
    if (new Date(day.getTime() + 86400000).getUTCDate() === 1) return to.slice(0, 7);
    return new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
  }

  async function subsidy(p, institutionId) {
    const { el } = window.EC;
    const month = claimMonth(p.to);
    const q = new URLSearchParams({ month });
    if (p.region) q.set("region", p.region);
    const missing = document.getElementById("subsidy-missing");
    const table = document.getElementById("subsidy-table");
    const note = document.getElementById("subsidy-month");
    let report;
    try {
      report = await EC.api("/api/v1/subsidy/totals?" + q.toString());
    } catch (e) {
      if (e.status === 404 && e.message === "Not Found") { missing.hidden = false; table.hidden = true; return "missing"; }
      EC.showError(note, e);
      return "error";
    }
    const homes = report.homes.filter((h) => !institutionId || h.institution_id === institutionId);
    missing.hidden = true;
    document.getElementById("subsidy").classList.remove("placeholder");
    note.hidden = false;
    note.textContent = t(homes.length ? "subsidy_month" : "subsidy_none", { month: report.month });
    table.hidden = homes.length === 0;
    table.querySelector("thead").replaceChildren(el("tr", {}, ...SUBSIDY_COLUMNS.map(([, label], i) => el("th", { scope: "col", class: i ? "num" : null }, t(label)))));
    table.querySelector("tbody").replaceChildren(...homes.map((h) => el("tr", { "data-institution-id": String(h.institution_id) },
      ...SUBSIDY_COLUMNS.map(([key, , fmt], i) => el(i ? "td" : "th", { class: i ? "num" + (key === "withheld_yuan" && Number(h[key]) > 0 ? " bad" : "") : null, scope: i ? null : "row" }, fmt(h[key]))))));
    files(month, p.region, institutionId, homes.length > 0);
    return "shown";
  }

  // The month as a file, in the page's language: a home's claim lines on its page, the totals on the region's.
  function files(month, region, institutionId, shown) {
    const box = document.getElementById("subsidy-files");
    box.hidden = !shown;
    for (const button of box.querySelectorAll("button[data-format]")) {
      button.onclick = async () => {
        const q = new URLSearchParams({ month, format: button.dataset.format, lang: EC.lang });
        if (region && !institutionId) q.set("region", region);
        const path = institutionId ? "/api/v1/institutions/" + institutionId + "/subsidy/export" : "/api/v1/subsidy/export";
        await EC.download(path + "?" + q.toString(), "subsidy-files-error");
      };
    }
  }

  window.REG = { period, savePeriod, figuresQuery, COLUMNS, VISIT_COLUMNS, visitJudge, visitCells, reasonText, termRule, standing, subsidy, claimMonth, fmt: { pct, int, sec, num, yuan, falseAlarms, falseAlarmRate } };
})();
