// The drill-down of one home for a regulator: its figures over the period, the coverage of its visits to elders
// living alone (the region page's row of the home), why it needs attention, alarms by kind, response times per
// shift, its credit score term by term, the one-press risk inspection now, and the subsidy section (the month's
// verified totals of the home, a flag when its claims go to a person, and each claim line not paid in full with its
// verdict, reasons and the bed sensor's evidence night by night).
"use strict";

(async function () {
  const { t, tCode, el, api } = window.EC;
  await EC.start({ roles: ["regulator", "admin"] });
  const match = window.location.pathname.match(/^\/regulator\/institutions\/(\d+)$/);
  const id = match ? Number(match[1]) : 0;
  const p = REG.period();
  const state = {};
  document.getElementById("back").href = "/regulator?" + REG.figuresQuery(p);

  function dl(items) {
    return items.map(([label, value, cls, key]) => el("div", { "data-key": key || null }, el("dt", {}, t(label)), el("dd", { class: cls || null }, value)));
  }

  function render() {
    const { home, figures, attention, report, score, explained, risk, flags } = state;
    document.getElementById("home-name").textContent = home.name;
    document.title = home.name + " · " + t("app_name");
    document.getElementById("home-facts").textContent = [home.code, home.address, home.star_grade ? t("stars", { n: home.star_grade }) : t("no_grade"),
      home.contact_phone ? t("phone", { phone: home.contact_phone }) : ""].filter(Boolean).join(" · ");
    document.getElementById("home-period").textContent = t("period_line", { from: p.from, to: p.to });
    document.getElementById("figures").replaceChildren(...dl(REG.COLUMNS.filter((c) => !c.text && c.key !== "credit").map((c) => {
      const judged = c.judge ? c.judge(figures[c.key], figures) : "";
      return [c.label, c.fmt(figures[c.key], figures) + (judged === "bad" ? " ⚠" : ""), judged, c.key];
    }).concat([["col_residents", REG.fmt.int(figures.residents), ""], ["col_no_contact", REG.fmt.int(figures.residents_without_emergency_contact), figures.residents_without_emergency_contact > 0 ? "bad" : ""]])));
    renderVisits();
    const reasons = attention ? attention.reasons : [];
    document.getElementById("why").replaceChildren(...reasons.map((r) => el("li", {}, REG.reasonText(r))));
    document.getElementById("why-none").hidden = reasons.length > 0;
    const kinds = Object.entries(figures.alarms_by_kind || {}).sort((a, b) => b[1] - a[1]);
    document.querySelector("#kinds tbody").replaceChildren(...kinds.map(([k, n]) => el("tr", {}, el("td", {}, tCode("kind", k)), el("td", { class: "num" }, String(n)))));
    const shifts = report.filter((r) => r.institution_code === home.code);
    document.querySelector("#shifts tbody").replaceChildren(...shifts.map((r) => el("tr", {}, el("td", {}, r.shift || t("no_shift")),
      el("td", { class: "num" }, String(r.alarms)), el("td", { class: "num" }, REG.fmt.sec(r.median_s_to_acknowledge)),
      el("td", { class: "num" + (r.p90_s_to_acknowledge > 60 ? " bad" : "") }, REG.fmt.sec(r.p90_s_to_acknowledge)),
      el("td", { class: "num" + (r.unacknowledged_over_5_min > 0 ? " bad" : "") }, String(r.unacknowledged_over_5_min)))));
    document.getElementById("shifts-none").hidden = shifts.length > 0;
    const credit = document.getElementById("credit-line");
    credit.textContent = score ? t("credit_line", { score: score.score.toFixed(1), threshold: score.threshold, from: score.period_start, to: score.period_end })
      + (score.blacklisted ? " · " + t("blacklisted") : "") : t("credit_none");
    credit.className = "state-line" + (score && score.blacklisted ? " level-danger" : "");
    document.querySelector("#terms tbody").replaceChildren(...(explained ? explained.terms : []).map((x) => el("tr", {},
      el("td", {}, tCode("term", x.term)), el("td", {}, REG.termRule(x)), el("td", { class: "num" + (x.deduction > 0 ? " bad" : "") }, x.deduction.toFixed(1)))));
    document.querySelector("#risks tbody").replaceChildren(...(risk ? risk.risks : []).map((r) => el("tr", {},
      el("td", { class: "level-" + r.level }, tCode("level", r.level)), el("td", {}, EC.lang === "en" ? r.name : r.name_zh),
      el("td", {}, (EC.lang === "en" ? r.findings : r.findings_zh).join(EC.lang === "en" ? "; " : "；") || "—"))));
    const flag = flags.find((f) => f.institution_id === id);
    const flagLine = document.getElementById("subsidy-flag");
    flagLine.hidden = !flag;
    if (flag) flagLine.textContent = t("subsidy_flag", { since: EC.fmtDate(flag.raised_at) });
    renderLines();
  }

  // The home's row of the region page's visits table (the endpoint narrowed to it on the server, which answers only
  // for a home of the regulator's region). A failed request is said in this section and leaves the rest of the page.
  function renderVisits() {
    const { visits } = state;
    const table = document.getElementById("visits-table");
    if (!visits || !visits.coverage) {
      table.hidden = true;
      if (visits) EC.showError("visits-error", visits.error);
      return;
    }
    const row = visits.coverage.homes.find((h) => h.institution_id === id);
    table.querySelector("thead").replaceChildren(el("tr", {}, el("th", { scope: "col" }, t("col_home")),
      ...REG.VISIT_COLUMNS.map((col) => el("th", { scope: "col", class: "num" }, t(col.label)))));
    table.querySelector("tbody").replaceChildren(...(row ? [el("tr", { "data-institution-id": String(id) },
      el("th", { scope: "row" }, row.institution_name || row.institution_code || ""), ...REG.visitCells(row))] : []));
    table.hidden = !row;
    document.getElementById("visits-error").hidden = true;
  }

  // The claim lines of the month that are not paid in full: what was claimed, what is payable, why, and the
  // evidence night by night.
  function renderLines() {
    const lines = state.subsidyLines || [];
    for (const id of ["subsidy-lines-title", "subsidy-lines", "nights-legend"]) document.getElementById(id).hidden = lines.length === 0;
    document.getElementById("nights-legend").replaceChildren(t("nights_legend"), ...NIGHT_KINDS.map((kind) =>
      el("span", { class: "legend-item" }, el("span", { class: "night n-" + kind, "aria-hidden": "true" }), t("night." + kind))));
    document.getElementById("subsidy-lines").querySelector("tbody").replaceChildren(...lines.map((l) => el("tr", { "data-line": String(l.line_no) },
      el("td", { class: "num" }, String(l.line_no)), el("td", {}, l.person_code || l.bed_code || "—"),
      el("td", {}, tCode("programme", l.programme)),
      el("td", { class: "num" }, REG.fmt.yuan(l.claimed_yuan)), el("td", { class: "num" }, REG.fmt.yuan(l.payable_yuan)),
      el("td", { class: l.verdict === "rejected" ? "bad" : null }, tCode("verdict", l.verdict)),
      el("td", {}, el("ul", { class: "reasons" }, ...l.reasons.map((r) => el("li", { "data-code": r.code },
        el("strong", {}, tCode("reason", r.code)), " — " + (EC.lang === "en" ? r.text : r.text_zh || r.text))))),
      el("td", {}, nightStrip(l.evidence, state.subsidyMonth)))));
  }

  // What the bed sensor (and the registers) said of each night of the month, one cell a night; the kinds are
  // the evidence's own lists, days in none of them are nights the person was not in this bed or home.
  const NIGHT_KINDS = ["present", "absent", "no_evidence", "hospital", "after_death", "none"];
  function nightStrip(evidence, month) {
    const nights = (evidence && evidence.nights) || {};
    const [year, mon] = month.split("-").map(Number);
    const days = new Date(Date.UTC(year, mon, 0)).getUTCDate();
    const kindOf = {};
    for (const kind of NIGHT_KINDS.slice(0, -1)) for (const day of nights[kind] || []) kindOf[day] = kind;
    const counts = {};
    const cells = [];
    for (let day = 1; day <= days; day++) {
      const kind = kindOf[day] || "none";
      counts[kind] = (counts[kind] || 0) + 1;
      cells.push(el("span", { class: "night n-" + kind, "data-day": String(day), "data-kind": kind, title: t("night_title", { day, what: t("night." + kind) }) }));
    }
    const summary = NIGHT_KINDS.filter((k) => counts[k]).map((k) => t("night_count", { what: t("night." + k), n: counts[k] }));
    return el("div", { class: "nights", role: "img", "aria-label": summary.join(EC.lang === "en" ? ", " : "，") }, ...cells);
  }

  async function subsidyLines() {
    const month = REG.claimMonth(p.to);
    const view = await api("/api/v1/institutions/" + id + "/subsidy/claims?" + new URLSearchParams({ month }).toString());
    state.subsidyMonth = month;
    state.subsidyLines = view.lines.filter((l) => l.verdict && l.verdict !== "verified");
    renderLines();
  }

  try {
    const query = REG.figuresQuery(p, { institution_id: id });
    const since = new Date(p.from + "T00:00:00+08:00").toISOString();
    const until = new Date(new Date(p.to + "T00:00:00+08:00").getTime() + 86400000).toISOString();
    // The visits' coverage is a section of its own: its failure is said there and leaves the rest of the page.
    const visits = api("/api/v1/supervision/visits?" + query).then((coverage) => ({ coverage }), (error) => ({ error }));
    const [home, figures, attention, report, scores, risk, flags, visitsState] = await Promise.all([
      api("/api/v1/institutions/" + id),
      api("/api/v1/supervision/figures?" + query),
      api("/api/v1/supervision/attention?" + REG.figuresQuery(p)),
      api("/api/v1/alarms/report?" + new URLSearchParams({ since, until, by: "shift" }).toString()),
      api("/api/v1/supervision/credit-scores?institution_id=" + id),
      api("/api/v1/supervision/institutions/" + id + "/risk-inspection"),
      api("/api/v1/supervision/flags"),
      visits,
    ]);
    const score = scores[0] || null;
    Object.assign(state, {
      home, figures: figures.homes[0], attention: attention.find((a) => a.institution_id === id), report, score, risk, flags,
      visits: visitsState,
      explained: score ? await api("/api/v1/supervision/credit-scores/" + score.id) : null,
    });
  } catch (e) {
    EC.showError("page-error", e);
    return;
  }
  render();
  document.getElementById("risk-pdf").addEventListener("click",
    () => EC.download("/api/v1/supervision/institutions/" + id + "/risk-inspection.pdf", "risk-pdf-error"));
  document.getElementById("content").hidden = false;
  const subsidyState = await REG.subsidy(p, id);
  if (subsidyState === "shown") {
    try {
      await subsidyLines();
    } catch (e) {
      EC.showError("subsidy-month", e);
    }
  }
  document.getElementById("subsidy").dataset.state = subsidyState;
  EC.onLang(render);
  document.body.dataset.ready = "true";
})();
