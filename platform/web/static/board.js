// The staff board: every bed of a floor as a tile (in bed, out of bed with minutes, alarm, device offline,
// empty), the queue of open alarms with acknowledge / attending / resolve, the alarm sound, and the notifications
// that reached nobody. Alarms arrive live on the alarm stream; bed states are read again every 15 s and shortly
// after each alarm change; the notifications that reached nobody every 30 s.
"use strict";

(async function () {
  const { t, tCode, el, api } = window.EC;
  const { AlarmStore, alarmItem, resolveDialog, detailText, MARK } = window.BoardAlarms;
  const { Undelivered } = window.BoardUndelivered;
  const FLOOR_KEY = "eldercare.board.floor";
  const REFRESH_MS = 15000;
  const UNDELIVERED_MS = 30000;

  const me = await EC.start({ roles: ["staff", "head", "admin"] });
  const params = new URLSearchParams(window.location.search);
  const institutionId = Number(params.get("institution")) || me.institution_id;
  const state = { board: null, names: new Map(), floor: params.get("floor") || window.localStorage.getItem(FLOOR_KEY) || "", namesAt: 0 };
  const store = new AlarmStore();
  const sound = new window.AlarmSound();
  const queue = document.getElementById("queue");
  const tiles = document.getElementById("tiles");

  if (!institutionId) {
    EC.showError("board-error", new Error(t("no_institution")));
    return;
  }

  // --- names (audited reads of the residents endpoint), beds --------------------------------------------
  async function loadNames() {
    state.namesAt = Date.now();
    const names = new Map();
    for (let offset = 0; ; offset += 500) {
      const page = await api("/api/v1/institutions/" + institutionId + "/residents?status=admitted&limit=500&offset=" + offset);
      for (const r of page) names.set(r.id, r.name);
      if (page.length < 500) break;
    }
    state.names = names;
  }

  async function loadBoard() {
    try {
      state.board = await api("/api/v1/institutions/" + institutionId + "/board");
      document.getElementById("board-error").hidden = true;
      const unknown = state.board.beds.some((b) => b.resident_id && !state.names.has(b.resident_id));
      if (unknown && Date.now() - state.namesAt > 60000) await loadNames();
      render();
    } catch (e) {
      EC.showError("board-error", e);
    }
  }

  let soon = null;
  function refreshSoon() {
    window.clearTimeout(soon);
    soon = window.setTimeout(loadBoard, 1000);
  }

  // --- places -------------------------------------------------------------------------------------------
  function bedByCode(code) {
    return state.board ? state.board.beds.find((b) => b.bed_code === code) : undefined;
  }

  function floorName(bed) {
    return bed.floor ? (bed.building ? bed.building + " " : "") + bed.floor : t("home_care_beds");
  }

  function place(alarm) {
    const bed = alarm.bed_code ? bedByCode(alarm.bed_code) : undefined;
    if (!bed) return { where: alarm.bed_code ? t("bed_code", { code: alarm.bed_code }) : alarm.device_code ? t("device_code", { code: alarm.device_code }) : t("whole_home"), who: "" };
    const here = !state.floor || String(bed.floor_id) === state.floor;
    const where = (here ? "" : floorName(bed) + " ") + t("bed_label", { label: bed.label || bed.bed_code });
    // The bed's occupant, unless the alarm was about someone else (it is older than their stay).
    if (alarm.person_code && alarm.person_code !== bed.person_code) return { where, who: alarm.person_code };
    return { where, who: bed.resident_id ? state.names.get(bed.resident_id) || bed.person_code || "" : "" };
  }

  // The undelivered list names an alarm's bed; the board's own copy of the alarm (if it has seen it) says more.
  const undelivered = new Undelivered(
    (id, bedCode) => {
      const alarm = store.seen(id) || (bedCode ? { bed_code: bedCode } : null);
      return alarm ? place(alarm) : null;
    },
    (row) => row.institution_id === institutionId,
  );

  function describe(alarm) {
    const { where, who } = place(alarm);
    return [t("prio." + alarm.priority), tCode("kind", alarm.kind), where, who].filter(Boolean).join(" · ");
  }

  // --- rendering -----------------------------------------------------------------------------------------
  function renderFloors() {
    const select = document.getElementById("floor");
    const floors = state.board ? state.board.floors : [];
    const options = [el("option", { value: "" }, t("all_floors"))];
    for (const f of floors) options.push(el("option", { value: String(f.id) }, f.building + " " + f.name + " (" + t("n_beds", { n: f.beds }) + ")"));
    if (state.board && state.board.beds.some((b) => b.floor_id === null)) options.push(el("option", { value: "none" }, t("home_care_beds")));
    select.replaceChildren(...options);
    if (![...select.options].some((o) => o.value === state.floor)) state.floor = "";
    select.value = state.floor;
  }

  function tileState(bed, alarm) {
    if (!bed.resident_id) return { cls: "tile-empty", text: t("bed_empty") };
    if (bed.in_hospital) return { cls: "tile-away", text: t("in_hospital") };
    if (bed.presence === "out_of_bed") {
      const minutes = bed.out_since ? (Date.now() - new Date(bed.out_since).getTime()) / 60000 : null;
      return { cls: "tile-out", text: minutes === null ? t("out_over", { h: state.board.out_window_hours }) : t("out_minutes", { m: EC.fmtMinutes(minutes) }) };
    }
    if (bed.presence === "in_bed") return { cls: "tile-in", text: t("in_bed") };
    const sensor = bed.devices.find((d) => d.kind === "bed_sensor");
    if (sensor && sensor.offline) return { cls: "tile-unknown", text: t("presence_offline") };
    return { cls: "tile-unknown", text: sensor ? t("presence_unknown") : t("no_bed_sensor") };
  }

  function tile(bed, alarm) {
    const st = tileState(bed, alarm);
    const name = bed.resident_id ? state.names.get(bed.resident_id) || bed.person_code : "";
    const offline = bed.device_offline || (state.board && state.board.gateway_offline);
    const classes = ["tile", st.cls];
    if (offline) classes.push("tile-offline");
    if (alarm) classes.push("prio-" + alarm.priority, "has-alarm");
    if (alarm && alarm.state !== "attending") classes.push("flash");
    const parts = [
      el("span", { class: "tile-bed" }, bed.label || bed.bed_code),
      el("span", { class: "tile-name" }, name || "\u00a0"),
      el("span", { class: "tile-state" }, st.text),
      alarm ? el("span", { class: "tile-alarm" }, MARK[alarm.priority] + " " + tCode("kind", alarm.kind) + " · " + tCode("state", alarm.state)) : null,
      offline && !(alarm && /^(device_|gateway_)/.test(alarm.kind))
        ? el("span", { class: "tile-dev" }, "⚠ " + (bed.device_offline ? t("device_offline") : t("gateway_offline_short"))) : null,
    ];
    const label = [t("bed_label", { label: bed.label || bed.bed_code }), name, st.text,
      alarm ? t("prio." + alarm.priority) + " " + tCode("kind", alarm.kind) + " " + tCode("state", alarm.state) : "",
      offline ? t("device_offline") : ""].filter(Boolean).join(", ");
    const attrs = { class: classes.join(" "), "data-bed-code": bed.bed_code, "data-presence": bed.presence, "aria-label": label };
    if (alarm) { attrs["data-alarm-id"] = String(alarm.id); attrs["data-alarm-state"] = alarm.state; }
    const node = bed.resident_id ? el("a", { ...attrs, href: "/resident/" + bed.resident_id }, ...parts) : el("div", attrs, ...parts);
    return el("li", {}, node);
  }

  function visibleBeds() {
    if (!state.board) return [];
    if (!state.floor) return state.board.beds;
    if (state.floor === "none") return state.board.beds.filter((b) => b.floor_id === null);
    return state.board.beds.filter((b) => String(b.floor_id) === state.floor);
  }

  function render() {
    if (state.board) {
      document.getElementById("home-name").textContent = state.board.institution_name;
      document.getElementById("gateway-down").hidden = !state.board.gateway_offline;
      renderFloors();
      const alarms = store.byBed();
      const beds = visibleBeds();
      const active = document.activeElement && document.activeElement.closest(".tile") ? document.activeElement.dataset.bedCode : null;
      tiles.replaceChildren(...beds.map((b) => tile(b, alarms.get(b.bed_code))));
      if (active) { const again = tiles.querySelector('[data-bed-code="' + CSS.escape(active) + '"]'); if (again) again.focus(); }
      const occupied = beds.filter((b) => b.resident_id).length;
      const out = beds.filter((b) => b.resident_id && b.presence === "out_of_bed" && !b.in_hospital).length;
      document.getElementById("beds-summary").textContent = t("beds_summary", { n: beds.length, occupied, out });
    }
    renderQueue();
    renderSound();
    undelivered.render();
  }

  function renderQueue() {
    const alarms = store.open();
    const focused = document.activeElement && document.activeElement.closest(".alarm");
    const keep = focused ? { id: focused.dataset.alarmId, action: document.activeElement.dataset.action } : null;
    queue.replaceChildren(...alarms.map((a) => alarmItem(a, place, onAction)));
    if (keep) {
      const again = queue.querySelector('[data-alarm-id="' + keep.id + '"] [data-action="' + keep.action + '"]')
        || queue.querySelector('[data-alarm-id="' + keep.id + '"] button') || queue.querySelector("button");
      if (again) again.focus();
    }
    document.getElementById("queue-empty").hidden = alarms.length > 0;
    const raised = alarms.filter((a) => a.state === "raised").length;
    document.getElementById("queue-count").textContent = alarms.length ? t("queue_count", { n: alarms.length, raised }) : "";
  }

  function renderSound() {
    sound.want(store.soundPattern());
    const button = document.getElementById("sound");
    button.textContent = sound.enabled ? t("sound_on") : t("sound_enable");
    button.setAttribute("aria-pressed", sound.enabled ? "true" : "false");
    button.classList.toggle("sound-off", !sound.enabled);
    document.getElementById("sound-hint").hidden = sound.enabled || sound.wanted === "off";
  }

  // --- actions --------------------------------------------------------------------------------------------
  const openResolve = resolveDialog(store, describe, () => refreshSoon());

  async function onAction(alarm, action) {
    if (action === "resolve") { openResolve(alarm, document.activeElement); return; }
    try {
      await store.act(alarm, action);
      EC.announce(t(action === "acknowledge" ? "announce_acknowledged" : "announce_attending", { what: describe(alarm) }));
    } catch (e) {
      EC.announce(e.status === 409 ? t("alarm_changed") : t("error_load", { reason: e.message }));
      if (e.status === 409) refreshSoon();
    }
  }

  document.getElementById("sound").addEventListener("click", async () => {
    if (sound.enabled) await sound.disable(); else await sound.enable();
    renderSound();
  });

  document.getElementById("floor").addEventListener("change", (event) => {
    state.floor = event.target.value;
    window.localStorage.setItem(FLOOR_KEY, state.floor);
    render();
  });

  // Space opens a tile as Enter does (tiles are links).
  tiles.addEventListener("keydown", (event) => {
    const node = event.target.closest("a.tile");
    if (node && event.key === " ") { event.preventDefault(); node.click(); }
  });

  store.onChange((fresh) => {
    render();
    for (const alarm of fresh) EC.announce(t("announce_new", { what: [describe(alarm), detailText(alarm)].filter(Boolean).join(" · ") }));
    refreshSoon();
  });

  function tick() {
    document.getElementById("clock").textContent = EC.fmtTime(new Date().toISOString());
  }
  tick();
  window.setInterval(tick, 10000);
  window.setInterval(() => render(), 30000); // minutes out of bed and alarm ages move on
  window.setInterval(loadBoard, REFRESH_MS);
  window.setInterval(() => undelivered.load(), UNDELIVERED_MS);
  EC.onLang(() => render());

  await loadNames();
  await loadBoard();
  await undelivered.load();
  store.connect((up) => { document.getElementById("stream-down").hidden = up; });
  document.body.dataset.ready = "true";
})();
