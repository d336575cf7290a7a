// The family page: their elder's state now in plain words, each alarm with how it was handled, and the
// family member's own notification settings and channels (/api/v1/me/notifications). Only residents linked
// to the user are offered; any other (?resident=) is "not found", and nothing is read about it.
"use strict";

(async function () {
  const { t, tCode, el, api } = window.EC;
  const KINDS = ["button", "fall", "sos", "bed_exit", "vitals", "wander", "no_presence", "smoke", "gas", "water"];
  await EC.start({ roles: ["family", "admin"] });
  const params = new URLSearchParams(window.location.search);
  const state = { residents: [], current: null, status: null, alarms: [], prefs: null, channels: [] };

  function setResult(id, ok, text) {
    const node = document.getElementById(id);
    node.className = ok ? "ok" : "bad";
    node.textContent = text;
  }

  // --- the elder now -----------------------------------------------------------------------------------
  function stateSentence(s, name) {
    switch (s.state) {
      case "in_bed": return t("family_in_bed", { name });
      case "out_of_bed":
        return s.out_since ? t("family_out", { name, m: EC.fmtMinutes((Date.now() - new Date(s.out_since)) / 60000), at: EC.fmtTime(s.out_since) })
          : t("family_out_long", { name, h: 12 });
      case "in_hospital": return t("family_in_hospital", { name });
      case "discharged": return t("family_discharged", { name });
      case "deceased": return t("family_deceased", { name });
      case "no_bed": return t("family_no_bed", { name });
      default: return t("family_unknown", { name });
    }
  }

  function openSentence(alarms) {
    const worst = alarms.reduce((a, b) => (a && ["raised", "acknowledged", "attending"].indexOf(a.state) >= ["raised", "acknowledged", "attending"].indexOf(b.state) ? a : b), null);
    if (!worst) return "";
    return t("family_open", { n: alarms.length, what: tCode("kind", worst.kind), state: tCode("family_state", worst.state) });
  }

  function renderNow() {
    const r = state.current;
    const s = state.status;
    if (!r || !s) return;
    document.getElementById("now-title").textContent = r.name;
    document.getElementById("now-where").textContent = [r.institution_name, s.bed_label ? t("bed_label", { label: s.bed_label }) : ""].filter(Boolean).join(" · ");
    const line = document.getElementById("now-state");
    line.className = "now-state " + s.state;
    line.textContent = stateSentence(s, r.name);
    document.getElementById("now-seen").textContent = s.has_bed_sensor ? t("family_seen", { ago: EC.fmtAgo(s.last_reading_at), at: EC.fmtDateTime(s.last_reading_at) }) : "";
    const device = document.getElementById("now-device");
    device.hidden = !s.device_offline;
    device.textContent = t("family_device_offline", { phone: r.institution_phone || "—", home: r.institution_name });
    const open = document.getElementById("now-open");
    open.hidden = s.open_alarms.length === 0;
    open.textContent = openSentence(s.open_alarms);
    document.getElementById("vitals-link").href = "/resident/" + r.id;
  }

  // --- alarms, as a story -------------------------------------------------------------------------------
  function step(text, at, from) {
    return el("li", {}, EC.fmtTime(at) + " " + text + (from ? " (" + t("after", { d: EC.fmtSeconds((new Date(at) - new Date(from)) / 1000) }) + ")" : ""));
  }

  function renderAlarms() {
    const list = state.alarms.map((a) => {
      const steps = [];
      if (a.acknowledged_at) steps.push(step(t("story_acknowledged"), a.acknowledged_at, a.raised_at));
      if (a.attending_at) steps.push(step(t("story_attending"), a.attending_at, a.raised_at));
      if (a.closed_at) steps.push(step(t(a.state === "cancelled" ? "story_cancelled" : "story_resolved", { outcome: tCode("outcome", a.outcome) || "—" }), a.closed_at));
      const open = ["raised", "acknowledged", "attending"].includes(a.state);
      return el("li", { class: "p-" + a.priority, "data-alarm-id": String(a.id), "data-state": a.state },
        el("div", { class: "head" }, EC.fmtDate(a.raised_at) + " " + EC.fmtTime(a.raised_at) + " · " + tCode("kind", a.kind) + " (" + t("prio." + a.priority) + ")"),
        steps.length ? el("ul", {}, ...steps) : null,
        open ? el("p", { class: "open" }, tCode("family_state", a.state)) : null);
    });
    document.getElementById("alarms").replaceChildren(...list);
    document.getElementById("alarms-empty").hidden = list.length > 0;
  }

  // --- notification settings ----------------------------------------------------------------------------
  function renderPrefs() {
    const p = state.prefs;
    if (!p) return;
    const form = document.getElementById("prefs-form");
    document.getElementById("kinds").replaceChildren(...KINDS.map((k) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "kind", value: k, checked: p.kinds === null || p.kinds.includes(k) }), el("span", {}, tCode("kind", k)))));
    form.which.value = p.kinds === null ? "all" : "some";
    form.quiet_on.checked = p.quiet_from !== null;
    if (p.quiet_from) form.quiet_from.value = p.quiet_from.slice(0, 5);
    if (p.quiet_to) form.quiet_to.value = p.quiet_to.slice(0, 5);
    form.notify_resolved.checked = p.notify_resolved;
    form.language.value = p.language;
    syncKinds();
  }

  function syncKinds() {
    const form = document.getElementById("prefs-form");
    const some = form.which.value === "some";
    for (const box of form.querySelectorAll("input[name=kind]")) box.disabled = !some;
    form.quiet_from.disabled = !form.quiet_on.checked;
    form.quiet_to.disabled = !form.quiet_on.checked;
  }

  async function savePrefs(event) {
    event.preventDefault();
    const form = document.getElementById("prefs-form");
    const kinds = form.which.value === "all" ? null : [...form.querySelectorAll("input[name=kind]:checked")].map((b) => b.value);
    if (kinds !== null && kinds.length === 0) { setResult("prefs-result", false, t("prefs_need_kind")); return; }
    const body = {
      kinds,
      quiet_from: form.quiet_on.checked ? form.quiet_from.value + ":00" : null,
      quiet_to: form.quiet_on.checked ? form.quiet_to.value + ":00" : null,
      timezone: (state.prefs && state.prefs.timezone) || "Asia/Shanghai",
      language: form.language.value,
      notify_resolved: form.notify_resolved.checked,
    };
    try {
      state.prefs = await api("/api/v1/me/notifications/prefs", { method: "PUT", body });
      setResult("prefs-result", true, t("saved"));
    } catch (e) {
      setResult("prefs-result", false, t("error_load", { reason: e.message }));
    }
  }

  function renderChannels() {
    document.getElementById("channels").replaceChildren(...state.channels.map((c) => el("li", { "data-channel-id": String(c.id) },
      el("span", {}, tCode("channel", c.kind) + "：" + c.address_masked),
      c.offered ? null : el("span", { class: "notice" }, t("channel_not_offered")),
      el("button", { type: "button", class: "btn", "aria-label": t("remove") + " " + tCode("channel", c.kind) + " " + c.address_masked, onclick: () => removeChannel(c) }, t("remove")))));
    // A channel the platform no longer sends (no mail server now) reaches nobody: the warning stays until one does.
    document.getElementById("channels-empty").hidden = state.channels.some((c) => c.offered);
  }

  // Only the kinds of channel this platform sends can be chosen (e-mail needs the home's mail server).
  async function loadKinds() {
    const offered = new Set((await api("/api/v1/me/notifications/kinds")).kinds);
    for (const option of [...document.getElementById("channel-kind").options]) {
      if (!offered.has(option.value)) option.remove();
    }
  }

  async function loadChannels() {
    state.channels = await api("/api/v1/me/notifications/channels");
    renderChannels();
  }

  async function removeChannel(channel) {
    try {
      await api("/api/v1/me/notifications/channels/" + channel.id, { method: "DELETE" });
      await loadChannels();
      setResult("channel-result", true, t("removed"));
    } catch (e) {
      setResult("channel-result", false, t("error_load", { reason: e.message }));
    }
  }

  async function addChannel(event) {
    event.preventDefault();
    const form = document.getElementById("channel-form");
    const address = form.address.value.trim();
    if (!address) { setResult("channel-result", false, t("channel_need_address")); form.address.focus(); return; }
    try {
      const position = state.channels.reduce((n, c) => Math.max(n, c.position), 0) + 1;
      await api("/api/v1/me/notifications/channels", { method: "POST", body: { kind: form.kind.value, address, position: Math.min(position, 20) } });
      form.address.value = "";
      await loadChannels();
      setResult("channel-result", true, t("added"));
    } catch (e) {
      setResult("channel-result", false, e.status === 422 ? t("channel_invalid") : t("error_load", { reason: e.message }));
    }
  }

  // --- loading ------------------------------------------------------------------------------------------
  async function show(resident) {
    state.current = resident;
    const [status, alarms] = await Promise.all([
      api("/api/v1/residents/" + resident.id + "/status"),
      api("/api/v1/residents/" + resident.id + "/alarms?limit=50"),
    ]);
    state.status = status;
    state.alarms = alarms;
    renderNow();
    renderAlarms();
    document.getElementById("content").hidden = false;
  }

  try {
    state.residents = await api("/api/v1/me/residents");
    if (state.residents.length === 0) { document.getElementById("no-residents").hidden = false; return; }
    const wanted = params.get("resident");
    const chosen = wanted ? state.residents.find((r) => String(r.id) === wanted) : state.residents[0];
    if (!chosen) { EC.showError("page-error", new EC.ApiError(404, "")); return; }
    if (state.residents.length > 1) {
      const select = document.getElementById("resident-select");
      select.replaceChildren(...state.residents.map((r) => el("option", { value: String(r.id) }, r.name)));
      select.value = String(chosen.id);
      select.addEventListener("change", () => {
        const next = state.residents.find((r) => String(r.id) === select.value);
        window.history.replaceState(null, "", "/family?resident=" + next.id);
        show(next);
      });
      document.getElementById("picker").hidden = false;
    }
    const [prefs] = await Promise.all([api("/api/v1/me/notifications/prefs"), loadChannels(), loadKinds(), show(chosen)]);
    state.prefs = prefs;
    renderPrefs();
  } catch (e) {
    EC.showError("page-error", e);
    return;
  }
  const form = document.getElementById("prefs-form");
  form.addEventListener("change", syncKinds);
  form.addEventListener("submit", savePrefs);
  document.getElementById("channel-form").addEventListener("submit", addChannel);
  EC.onLang(() => { renderNow(); renderAlarms(); renderPrefs(); renderChannels(); });
  window.setInterval(async () => {
    try { state.status = await api("/api/v1/residents/" + state.current.id + "/status"); renderNow(); } catch (_) { /* shown on the next load */ }
  }, 30000);
  document.body.dataset.ready = "true";
})();
