// The regulator's view of their region: totals, the homes on a map (Leaflet, as the facility map: tiles only
// when configured), the homes that need attention with their reasons, and every home's supervision figures in
// a table sortable by any column, and the coverage of the visits to elders living alone (a table of its own: the
// figures' table is already as wide as a 1366 px screen). Names of homes lead to the drill-down of one home.
"use strict";

(async function () {
  const { t, el, api } = window.EC;
  const me = await EC.start({ roles: ["regulator", "admin"] });
  const p = REG.period();
  const state = { report: null, coverage: null, attention: [], credit: new Map(), places: new Map(), sort: { key: "institution_name", dir: 1 }, map: null, layer: null };
  const form = document.getElementById("period");
  form.from.value = p.from;
  form.to.value = p.to;
  form.region.value = p.region;
  form.region.placeholder = me.region_code || "";

  function link(home) {
    const q = new URLSearchParams({ from: p.from, to: p.to });
    return el("a", { href: "/regulator/institutions/" + home.institution_id + "?" + q.toString() }, home.institution_name || home.institution_code);
  }

  // --- totals -------------------------------------------------------------------------------------------
  function renderTotals() {
    const r = state.report.region;
    const c = state.coverage && state.coverage.region;
    const items = [
      ["total_homes", String(state.report.homes.length), ""],
      ["col_beds", REG.fmt.int(r.beds), ""],
      ["col_occupancy", REG.fmt.pct(r.occupancy), ""],
      ["col_nursing_share", REG.fmt.pct(r.nursing_share), r.nursing_target_met === false ? "bad" : ""],
      ["col_online", REG.fmt.pct(r.device_online_rate), r.device_online_rate !== null && r.device_online_rate < 0.95 ? "bad" : ""],
      ["col_alarms", REG.fmt.int(r.alarms_for_people), ""],
      ["col_ack_median", REG.fmt.sec(r.median_s_to_acknowledge), ""],
      ["col_ack_p90", REG.fmt.sec(r.p90_s_to_acknowledge), r.p90_s_to_acknowledge > 60 ? "bad" : ""],
      ["col_unacked", REG.fmt.int(r.unacknowledged_over_5_min), r.unacknowledged_over_5_min > 0 ? "bad" : ""],
      ["col_falls", REG.fmt.int(r.falls), ""],
      ["col_false_alarms", REG.fmt.falseAlarms(r.false_alarms, r), ""],
      ["col_false_alarm_rate", REG.fmt.falseAlarmRate(r.false_alarm_rate, r), ""],
      ...(c ? [
        ["col_key_coverage", REG.fmt.pct(c.key_coverage), visitJudge(c.key_coverage, c.key_target), t("with_target", { label: t("col_key_coverage"), v: REG.fmt.pct(c.key_target) })],
        ["col_general_coverage", REG.fmt.pct(c.general_coverage), visitJudge(c.general_coverage, c.general_target), t("with_target", { label: t("col_general_coverage"), v: REG.fmt.pct(c.general_target) })],
      ] : []),
    ];
    document.getElementById("totals").replaceChildren(...items.map(([key, value, cls, label]) => el("div", { "data-key": key }, el("dt", {}, label || t(key)), el("dd", { class: cls === "bad" ? cls : "" }, value))));
    document.getElementById("region-name").textContent = t("region_period", { region: p.region || me.region_code || t("all_regions"), from: state.report.start, to: state.report.end });
  }

  // --- the table ----------------------------------------------------------------------------------------
  function rows() {
    return state.report.homes.map((h) => {
      const score = state.credit.get(h.institution_id);
      return { ...h, credit: score ? score.score : null, blacklisted: score ? score.blacklisted : false };
    });
  }

  function sortValue(row, key) {
    const column = REG.COLUMNS.find((c) => c.key === key);
    const v = column && column.value ? column.value(row) : row[key];
    return v === null || v === undefined ? null : v;
  }

  function renderTable() {
    const table = document.getElementById("homes");
    const { key, dir } = state.sort;
    const sorted = rows().sort((a, b) => {
      const x = sortValue(a, key);
      const y = sortValue(b, key);
      if (x === null && y === null) return 0;
      if (x === null) return 1; // no value: always last
      if (y === null) return -1;
      return (typeof x === "string" ? x.localeCompare(y, EC.lang) : x - y) * dir;
    });
    table.querySelector("thead").replaceChildren(el("tr", {}, ...REG.COLUMNS.map((c) => el("th", {
      scope: "col", class: c.text ? "" : "num", "aria-sort": c.key === key ? (dir > 0 ? "ascending" : "descending") : "none",
    }, el("button", { type: "button", "data-sort": c.key, onclick: () => sortBy(c.key) }, t(c.label))))));
    const body = sorted.map((row) => el("tr", { "data-institution-id": String(row.institution_id) }, ...REG.COLUMNS.map((c) => {
      const judged = c.judge ? c.judge(row[c.key], row) : "";
      const cls = [c.text ? "" : "num", judged].filter(Boolean).join(" ");
      const content = c.key === "institution_name" ? link(row) : c.fmt(row[c.key], row) + (judged === "bad" ? " ⚠" : "");
      return el(c.key === "institution_name" ? "th" : "td", { class: cls || null, scope: c.key === "institution_name" ? "row" : null, "data-key": c.key }, content);
    })));
    const r = state.report.region;
    const total = el("tr", { class: "total" }, ...REG.COLUMNS.map((c, i) => el("td", { class: c.text ? null : "num" },
      i === 0 ? t("region_totals") : c.key === "region_code" || c.key === "credit" ? "" : c.fmt(r[c.key], r))));
    table.querySelector("tbody").replaceChildren(...body, total);
  }

  function sortBy(key) {
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderTable();
    const again = document.querySelector('#homes [data-sort="' + key + '"]');
    if (again) again.focus();
    EC.announce(t("sorted_by", { col: t(REG.COLUMNS.find((c) => c.key === key).label), dir: t(state.sort.dir > 0 ? "ascending" : "descending") }));
  }

  // --- visits to elders living alone -----------------------------------------------------------------------
  // The columns, their judging and the cells are shared with a home's drill-down (regulator.common.js).
  const visitJudge = REG.visitJudge;
  const VISIT_COLUMNS = REG.VISIT_COLUMNS;
  const visitCells = REG.visitCells;

  function renderVisits() {
    const table = document.getElementById("visits-table");
    const name = (h) => h.institution_name || h.institution_code || "";
    const homes = [...state.coverage.homes].sort((a, b) => name(a).localeCompare(name(b), EC.lang));
    table.querySelector("thead").replaceChildren(el("tr", {}, el("th", { scope: "col" }, t("col_home")),
      ...VISIT_COLUMNS.map((col) => el("th", { scope: "col", class: "num" }, t(col.label)))));
    table.querySelector("tbody").replaceChildren(
      ...homes.map((h) => el("tr", { "data-institution-id": String(h.institution_id) }, el("th", { scope: "row" }, link(h)), ...visitCells(h))),
      el("tr", { class: "total", "data-institution-id": "0" }, el("td", {}, t("region_totals")), ...visitCells(state.coverage.region)));
    table.hidden = false;
    document.getElementById("visits-error").hidden = true;
  }

  // --- attention ----------------------------------------------------------------------------------------
  function renderAttention() {
    const list = state.attention.map((a) => el("li", { "data-institution-id": String(a.institution_id) },
      link(a), el("div", { class: "reasons" }, a.reasons.map(REG.reasonText).join("；"))));
    document.getElementById("attention").replaceChildren(...list);
    document.getElementById("attention-empty").hidden = list.length > 0;
  }

  // --- the map ------------------------------------------------------------------------------------------
  async function renderMap() {
    const config = await api("/api/v1/map/config");
    if (!state.map) {
      state.map = L.map("map", { zoomControl: true, minZoom: 3, maxZoom: config.tile_max_zoom || 18 });
      if (config.tile_url) L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "", maxZoom: config.tile_max_zoom }).addTo(state.map);
      state.map.setView([config.centre.lat, config.centre.lon], config.zoom);
    }
    document.getElementById("map-note").textContent = config.tile_url ? "" : t("map_no_tiles");
    if (state.layer) state.layer.remove();
    state.layer = L.layerGroup().addTo(state.map);
    const attention = new Map(state.attention.map((a) => [a.institution_id, a]));
    const points = [];
    const standingOf = (home) => {
      const score = state.credit.get(home.institution_id);
      return REG.standing(attention.get(home.institution_id), score && score.blacklisted);
    };
    const order = { good: 0, watch: 1, bad: 2 }; // the worst drawn last, on top
    const homes = [...state.report.homes].sort((a, b) => order[standingOf(a)] - order[standingOf(b)]);
    for (const home of homes) {
      const at = state.places.get(home.institution_id);
      if (!at) continue;
      const standing = standingOf(home);
      const colour = { good: "#2e7d32", watch: "#f9a825", bad: "#c62828" }[standing];
      const marker = L.circleMarker(at, { radius: 11, color: "#222", weight: 2, fillColor: colour, fillOpacity: 0.9 });
      const card = el("div", {}, el("div", { class: "home-label" }, link(home)),
        el("div", {}, t("col_online") + " " + REG.fmt.pct(home.device_online_rate)),
        el("div", {}, t("col_ack_p90") + " " + REG.fmt.sec(home.p90_s_to_acknowledge)),
        el("div", {}, t("col_occupancy") + " " + REG.fmt.pct(home.occupancy)));
      marker.bindPopup(card);
      // Names stay on the map while they fit (a region of a few dozen homes); otherwise on hover.
      marker.bindTooltip(home.institution_name || home.institution_code, { permanent: state.report.homes.length <= 30, direction: "right", offset: [10, 0] });
      marker.addTo(state.layer);
      points.push(at);
    }
    if (points.length) state.map.fitBounds(L.latLngBounds(points).pad(0.3), { maxZoom: 14 });
  }

  // Positions in the tiles' system: the homes' own (WGS-84), or the facility map's GCJ-02 ones.
  async function loadPlaces(tileCrs) {
    state.places.clear();
    for (let offset = 0; ; offset += 500) {
      const q = new URLSearchParams({ limit: "500", offset: String(offset) });
      if (p.region) q.set("region", p.region);
      const page = await api("/api/v1/institutions?" + q.toString());
      for (const i of page) if (i.lat !== null && i.lon !== null) state.places.set(i.id, [i.lat, i.lon]);
      if (page.length < 500) break;
    }
    if (tileCrs && tileCrs !== "wgs84") {
      const codes = new Map(state.report.homes.map((h) => [h.institution_code, h.institution_id]));
      const q = new URLSearchParams({ crs: tileCrs, limit: "2000" });
      if (p.region || me.region_code) q.set("region", p.region || me.region_code);
      const found = await api("/api/v1/map/homes?" + q.toString());
      for (const f of found.features) {
        const id = codes.get(f.properties.code);
        if (id && f.geometry) state.places.set(id, [f.geometry.coordinates[1], f.geometry.coordinates[0]]);
      }
    }
  }

  async function load() {
    try {
      const query = REG.figuresQuery(p);
      // The visits' coverage is a section of its own: its failure is said there and leaves the rest of the page.
      const visits = api("/api/v1/supervision/visits?" + query).then((coverage) => ({ coverage }), (error) => ({ error }));
      const [report, attention, credit, config, coverage] = await Promise.all([
        api("/api/v1/supervision/figures?" + query),
        api("/api/v1/supervision/attention?" + query),
        api("/api/v1/supervision/credit-scores"),
        api("/api/v1/map/config"),
        visits,
      ]);
      state.report = report;
      state.coverage = coverage.coverage || null;
      state.attention = attention;
      state.credit = new Map(credit.map((s) => [s.institution_id, s]));
      document.getElementById("page-error").hidden = true;
      renderTotals();
      renderTable();
      if (state.coverage) renderVisits();
      else EC.showError("visits-error", coverage.error);
      renderAttention();
      await loadPlaces(config.tile_crs);
      await renderMap();
      document.getElementById("subsidy").dataset.state = await REG.subsidy(p, null);
    } catch (e) {
      EC.showError("page-error", e);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = { from: form.from.value, to: form.to.value, region: form.region.value.trim() };
    if (!next.from || !next.to) return;
    REG.savePeriod(next);
    window.location.assign("/regulator?" + REG.figuresQuery(next));
  });
  EC.onLang(() => { if (state.report) { renderTotals(); renderTable(); renderAttention(); renderMap(); } if (state.coverage) renderVisits(); });
  await load();
  document.body.dataset.ready = "true";
})();
