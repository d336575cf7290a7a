// The facility map page (养老地图): markers coloured by free beds, a side list of what is in view,
// filters, and a detail card. Loads only the platform's own files and API; tiles only if configured.
// Every text from the data is set with textContent (never as HTML).
"use strict";

(function () {
  const TEXTS = window.MAP_TEXTS;
  const params = new URLSearchParams(window.location.search);
  let lang = params.get("lang") || window.localStorage.getItem("eldercare.map.lang") || "zh-CN";
  if (!TEXTS[lang]) lang = "zh-CN";

  const state = {
    map: null,
    crs: "wgs84",
    homes: new L.LayerGroup(),
    districts: new L.LayerGroup(),
    features: [],
    more: false,
    markers: new Map(),
    detail: null,
    seq: 0,
  };

  function t(key, values) {
    let text = (TEXTS[lang] && TEXTS[lang][key]) || TEXTS["zh-CN"][key] || key;
    for (const [name, value] of Object.entries(values || {})) text = text.replace("{" + name + "}", String(value));
    return text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function applyTexts() {
    document.documentElement.lang = lang;
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    document.getElementById("f-region").placeholder = t("region_hint");
    document.getElementById("lang").textContent = t("other_lang");
    document.getElementById("card-close").setAttribute("aria-label", t("close"));
  }

  function freeClass(beds) {
    if (!beds || beds.total === 0) return "no-beds";
    if (beds.free === 0) return "free-none";
    return beds.free >= 5 ? "free-many" : "free-few";
  }
  const COLOURS = { "free-many": "#1e8449", "free-few": "#d68910", "free-none": "#c0392b", "no-beds": "#7f8c8d" };

  function stars(grade) {
    return grade ? "★".repeat(grade) + "☆".repeat(5 - grade) : t("no_grade");
  }

  function priceText(price) {
    if (price.min === null && price.max === null) return t("no_price");
    const fmt = (v) => Number(v).toLocaleString(lang);
    if (price.min === price.max || price.max === null) return fmt(price.min) + " " + t("per_month");
    if (price.min === null) return "≤ " + fmt(price.max) + " " + t("per_month");
    return fmt(price.min) + "–" + fmt(price.max) + " " + t("per_month");
  }

  function filterQuery() {
    const form = document.getElementById("filters");
    const data = new FormData(form);
    const query = new URLSearchParams();
    for (const name of ["region", "type", "grade_min", "price_max", "free_min", "free_kind"]) {
      const value = String(data.get(name) || "").trim();
      if (value) query.set(name, value);
    }
    const services = data.getAll("services").map(String);
    if (services.length) query.set("services", services.join(","));
    query.set("crs", state.crs);
    return query;
  }

  function showNotice(text) {
    const notice = document.getElementById("notice");
    notice.textContent = text;
    notice.hidden = !text;
  }

  async function getJson(url) {
    const reply = await fetch(url, { headers: { Accept: "application/geo+json, application/json" } });
    if (reply.status === 429) throw new Error(t("busy", { s: reply.headers.get("Retry-After") || "1" }));
    const body = await reply.json();
    if (!reply.ok) {
      const reasons = (body.errors || []).map((e) => e.field.replace("query.", "") + ": " + e.reason).join("; ");
      const error = new Error(reasons || body.detail || String(reply.status));
      error.invalid = reply.status === 422;
      throw error;
    }
    return body;
  }

  function bboxParam() {
    const b = state.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    return [
      clamp(b.getWest(), -180, 179.9999), clamp(b.getSouth(), -90, 89.9999),
      clamp(b.getEast(), -179.9999, 180), clamp(b.getNorth(), -89.9999, 90),
    ].map((v) => v.toFixed(6)).join(",");
  }

  async function refresh() {
    const seq = ++state.seq;
    const errorLine = document.getElementById("form-error");
    const query = filterQuery();
    query.set("bbox", bboxParam());
    const homesQuery = new URLSearchParams(query);
    homesQuery.set("limit", "500");
    const districtQuery = new URLSearchParams(query);
    districtQuery.delete("free_min");
    districtQuery.delete("free_kind");
    try {
      const [homes, districts] = await Promise.all([
        getJson("/api/v1/map/homes?" + homesQuery.toString()),
        getJson("/api/v1/map/districts?" + districtQuery.toString()),
      ]);
      if (seq !== state.seq) return; // a newer view was asked for meanwhile
      errorLine.hidden = true;
      state.features = homes.features;
      state.more = homes.more;
      drawHomes();
      drawDistricts(districts.features);
      renderList();
    } catch (error) {
      if (seq !== state.seq) return;
      errorLine.textContent = error.invalid ? t("bad_filter", { reason: error.message }) : t("load_failed", { reason: error.message });
      errorLine.hidden = false;
    }
  }

  function drawHomes() {
    state.homes.clearLayers();
    state.markers.clear();
    for (const f of state.features) {
      if (!f.geometry) continue;
      const [lon, lat] = f.geometry.coordinates;
      const cls = freeClass(f.properties.beds);
      const marker = L.circleMarker([lat, lon], {
        radius: 9, weight: 2, color: "#ffffff", fillColor: COLOURS[cls], fillOpacity: 0.95,
        className: "home-marker " + cls,
      });
      marker.bindTooltip(f.properties.name, { direction: "top", offset: [0, -8] });
      marker.on("click", () => openDetail(f.properties.code));
      marker.addTo(state.homes);
      const node = marker.getElement && marker.getElement();
      if (node) node.setAttribute("data-code", f.properties.code);
      state.markers.set(f.properties.code, marker);
    }
  }

  function drawDistricts(features) {
    state.districts.clearLayers();
    if (features.length > 400) return; // too many to read at this zoom
    for (const f of features) {
      if (!f.geometry) continue;
      const [lon, lat] = f.geometry.coordinates;
      L.tooltip({ permanent: true, direction: "bottom", offset: [0, 6], className: "district-label", interactive: false, pane: "districts" })
        .setLatLng([lat, lon])
        .setContent(f.properties.name)
        .addTo(state.districts);
    }
  }

  function renderList() {
    const list = document.getElementById("list");
    list.replaceChildren();
    const shown = state.features.filter((f) => f.geometry);
    document.getElementById("summary").textContent = shown.length === 0
      ? t("none_in_view")
      : state.more ? t("in_view_more", { n: shown.length }) : t("in_view", { n: shown.length });
    for (const f of shown) {
      const p = f.properties;
      const cls = freeClass(p.beds);
      const item = el("li", { class: "entry", "data-code": p.code, tabindex: "0" },
        el("div", { class: "entry-head" },
          el("i", { class: "dot " + cls }),
          el("span", { class: "entry-name", text: p.name })),
        el("div", { class: "entry-meta", text: t(p.type) + " · " + stars(p.star_grade) + " · " + (p.district || "") }),
        el("div", { class: "entry-beds " + cls, text: t("free_of", { free: p.beds.free, total: p.beds.total }) }),
        el("div", { class: "entry-price", text: priceText(p.price) }));
      const open = () => {
        openDetail(p.code);
        const marker = state.markers.get(p.code);
        if (marker) marker.openTooltip();
      };
      item.addEventListener("click", open);
      item.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
      list.append(item);
    }
  }

  async function openDetail(code) {
    try {
      state.detail = await getJson("/api/v1/map/homes/" + encodeURIComponent(code) + "?crs=" + state.crs);
      renderCard();
    } catch (error) {
      showNotice(t("load_failed", { reason: error.message }));
    }
  }

  function bedsTable(beds) {
    const row = (label, b) => el("tr", {}, el("th", { text: label }), el("td", { text: String(b.total) }),
      el("td", { class: b.free > 0 ? "has-free" : "", text: String(b.free) }));
    return el("table", { class: "beds" },
      el("thead", {}, el("tr", {}, el("th", { text: t("kind") }), el("th", { text: t("total") }), el("th", { text: t("free") }))),
      el("tbody", {}, row(t("nursing"), beds.nursing), row(t("ordinary"), beds.ordinary),
        row(t("total"), { total: beds.total, free: beds.free })));
  }

  function roomsTable(rooms) {
    if (!rooms.length) return el("p", { class: "muted", text: t("no_rooms") });
    const body = el("tbody");
    for (const r of rooms) {
      const kinds = [];
      if (r.beds.nursing.total) kinds.push(t("nursing") + " " + r.beds.nursing.total);
      if (r.beds.ordinary.total) kinds.push(t("ordinary") + " " + r.beds.ordinary.total);
      body.append(el("tr", {}, el("td", { text: r.building + " " + r.floor + " " + r.room }),
        el("td", { text: kinds.join(t("list_sep")) }), el("td", { class: r.beds.free > 0 ? "has-free" : "", text: String(r.beds.free) })));
    }
    return el("table", { class: "rooms" },
      el("thead", {}, el("tr", {}, el("th", { text: t("room") }), el("th", { text: t("beds") }), el("th", { text: t("free") }))),
      body);
  }

  function renderCard() {
    const d = state.detail;
    if (!d) return;
    const p = d.properties;
    const gallery = el("div", { class: "gallery" });
    if (p.gallery.length === 0) gallery.append(el("p", { class: "muted", text: t("no_photos") }));
    for (const photo of p.gallery) {
      gallery.append(el("figure", {}, el("img", { src: photo.url, alt: photo.caption || p.name, loading: "lazy" }),
        photo.caption ? el("figcaption", { text: photo.caption }) : null));
    }
    const phone = p.contact_phone ? el("a", { href: "tel:" + p.contact_phone.replace(/[^0-9+]/g, ""), text: p.contact_phone }) : "—";
    const area = [p.province, p.city, p.district].filter((x) => x && x !== "市辖区").join(" ");
    const body = document.getElementById("card-body");
    body.replaceChildren(
      el("h2", { class: "card-name", text: p.name }),
      el("p", { class: "card-type", text: t(p.type) }),
      el("dl", { class: "facts" },
        el("dt", { text: t("grade") }), el("dd", { class: "card-grade", text: stars(p.star_grade) }),
        el("dt", { text: t("price") }), el("dd", { class: "card-price", text: priceText(p.price) }),
        el("dt", { text: t("district") }), el("dd", { text: area }),
        el("dt", { text: t("address") }), el("dd", { class: "card-address", text: p.address }),
        el("dt", { text: t("contact") }), el("dd", { class: "card-phone" }, phone),
        el("dt", { text: t("capacity") }), el("dd", { text: p.capacity === null ? "—" : String(p.capacity) }),
        el("dt", { text: t("services") }), el("dd", { class: "card-services", text: p.services.map((s) => t(s)).join(t("list_sep")) || "—" })),
      el("h3", { text: t("beds") }), bedsTable(p.beds),
      el("p", { class: "muted small", text: t("free_now_note") }),
      el("h3", { text: t("photos") }), gallery,
      el("h3", { text: t("rooms") + " (" + p.room_count + ")" }), roomsTable(p.rooms));
    document.getElementById("card").hidden = false;
  }

  async function focusRegion() {
    const region = document.getElementById("f-region").value.trim();
    if (!region) return;
    const query = filterQuery();
    query.delete("free_min");
    query.delete("free_kind");
    const districts = await getJson("/api/v1/map/districts?" + query.toString());
    const points = districts.features.filter((f) => f.geometry).map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]]);
    if (points.length) state.map.fitBounds(L.latLngBounds(points).pad(0.3), { maxZoom: 13 });
  }

  async function start() {
    applyTexts();
    const config = await getJson("/api/v1/map/config");
    state.crs = config.tile_crs || "wgs84";
    state.map = L.map("map", { zoomControl: true, minZoom: 3, maxZoom: config.tile_max_zoom || 18 });
    window.__map = state.map; // for the console and the browser test
    state.map.createPane("districts").style.zIndex = "350"; // district names under the markers
    L.control.scale({ imperial: false }).addTo(state.map);
    if (config.tile_url) {
      const tiles = L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "", maxZoom: config.tile_max_zoom });
      let failures = 0;
      tiles.on("tileerror", () => { if (++failures === 3) showNotice(t("tiles_failed")); });
      tiles.addTo(state.map);
    }
    state.districts.addTo(state.map);
    state.homes.addTo(state.map);
    state.map.setView([config.centre.lat, config.centre.lon], config.zoom); // in the tiles' system
    let timer = null;
    state.map.on("moveend", () => { clearTimeout(timer); timer = setTimeout(refresh, 150); });
    document.getElementById("filters").addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await focusRegion(); } catch (error) { /* the refresh below reports it */ }
      refresh();
    });
    document.getElementById("filters").addEventListener("reset", () => setTimeout(refresh, 0));
    document.getElementById("card-close").addEventListener("click", () => { document.getElementById("card").hidden = true; });
    document.getElementById("lang").addEventListener("click", () => {
      lang = lang === "zh-CN" ? "en" : "zh-CN";
      window.localStorage.setItem("eldercare.map.lang", lang);
      applyTexts();
      renderList();
      renderCard();
    });
    await refresh();
    document.body.dataset.ready = "1";
  }

  start().catch((error) => showNotice(t("load_failed", { reason: error.message })));
})();
