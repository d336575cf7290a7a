// What an alarm is about, in one short line for the nurse on the way to the room: the alarm's `detail` (what the
// device or the rule saw) read per kind from the keys that kind carries, with units and numbers in the page's
// language. The keys, by who writes them:
//   vitals           out_of_range, heart_rate, resp_rate, heart_rate_range, resp_rate_range   alarms/ticker.py
//   bed_exit         exited_at                                                                alarms/ticker.py
//   wander           lat, lon, metres_from_home                                               alarms/ticker.py
//   gateway_offline  gateway, last_status                                                     alarms/ticker.py
//   fall             source, confidence                               alarms/engine.py from ingest/store.py
//   sos              lat, lon, or position: "unreadable"              alarms/engine.py from ingest/store.py
//   device_<fault>   fault, active (the kind says it: the line names the alarm's device) alarms/engine.py
//   device_low_battery  also level: battery %, the gateway's or the device's last reading alarms/engine.py
//   any kind         unreadable: true (the text does not decrypt)     alarms/text.py
// button, smoke, gas, water and no_presence carry nothing the kind does not already say. The values come from
// devices: only the keys above, of the type expected, are shown, and as text (never as HTML); a kind or a key not
// listed here shows nothing, and a value masked for the reader ("***") shows as masked (but a battery level shows
// only when it is a number 0-100: masked, it shows nothing).
"use strict";

(function () {
  const { t } = window.EC;
  const MASK = "***";
  const MAX_TEXT = 40; // a device's own text (a gateway id, a fault code): one line, not a page

  function locale() { return EC.lang === "en" ? "en-GB" : "zh-CN"; } // as common.js formats times

  // A number of the detail in the page's language (at most `digits` decimals), the mask, or null (not a number).
  function num(value, digits) {
    if (value === MASK) return MASK;
    if (typeof value !== "number" || !Number.isFinite(value)) return null;
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
  }

  function text(value) {
    if (value === MASK) return MASK;
    if (typeof value !== "string" || !value) return null;
    return value.length > MAX_TEXT ? value.slice(0, MAX_TEXT) + "…" : value;
  }

  // [low, high] of a resident's range, or null (masked too: the rate beside it says it is masked).
  function range(value) {
    if (!Array.isArray(value) || value.length !== 2) return null;
    const [low, high] = value.map((v) => num(v, 1));
    return low !== null && high !== null ? { low, high } : null;
  }

  function position(d) {
    if (d.position === "unreadable") return t("detail.position_unreadable");
    const lat = num(d.lat, 5);
    const lon = num(d.lon, 5);
    return lat !== null && lon !== null ? t("detail.position", { lat, lon }) : null;
  }

  // A rate out of range, with the resident's range when the alarm carries it.
  function rate(value, limits, plain, limited) {
    const v = num(value, 1);
    if (v === null) return null;
    const r = range(limits);
    return r ? limited({ v, ...r }) : plain({ v });
  }

  function vitals(d) {
    // The rates named out of range; every rate the alarm carries when it names none (or the names are masked).
    const named = Array.isArray(d.out_of_range) ? d.out_of_range : ["heart_rate", "resp_rate"];
    return [
      named.includes("heart_rate")
        ? rate(d.heart_rate, d.heart_rate_range, (x) => t("detail.heart_rate", x), (x) => t("detail.heart_rate_limit", x)) : null,
      named.includes("resp_rate")
        ? rate(d.resp_rate, d.resp_rate_range, (x) => t("detail.resp_rate", x), (x) => t("detail.resp_rate_limit", x)) : null,
    ];
  }

  function bedExit(d) {
    if (d.exited_at === MASK) return [t("detail.out_of_bed", { m: MASK, at: MASK })];
    const at = typeof d.exited_at === "string" ? new Date(d.exited_at) : null;
    if (!at || Number.isNaN(at.getTime())) return [];
    return [t("detail.out_of_bed", { m: EC.fmtMinutes((Date.now() - at.getTime()) / 60000), at: EC.fmtTime(d.exited_at) })];
  }

  function fall(d) {
    const source = d.source === "radar" ? t("detail.fall_radar") : d.source === "wearable" ? t("detail.fall_wearable")
      : d.source === MASK ? MASK : null;
    const confidence = num(d.confidence, 2);
    return [source, confidence !== null ? t("detail.confidence", { n: confidence }) : null];
  }

  function wander(d) {
    const metres = d.metres_from_home;
    const away = metres === MASK ? t("detail.away_m", { n: MASK })
      : typeof metres === "number" && metres >= 1000 ? t("detail.away_km", { n: num(metres / 1000, 1) })
        : num(metres, 0) !== null ? t("detail.away_m", { n: num(metres, 0) }) : null;
    return [away, position(d)];
  }

  // A device's fault: the kind names the fault already; which of the bed's devices (a sensor, a button) is the one
  // to see to.
  function fault(alarm) {
    const code = text(alarm.device_code);
    return [code !== null ? t("device_code", { code }) : null];
  }

  // A low battery: how low, when the alarm has a level that is a percentage (anything else says nothing); then the
  // device.
  function lowBattery(alarm, d) {
    const level = d.level;
    const pct = typeof level === "number" && level >= 0 && level <= 100 ? num(level, 0) : null;
    return [pct !== null ? t("detail.battery", { n: pct }) : null, ...fault(alarm)];
  }

  function gateway(alarm, d) {
    const id = text(d.gateway);
    const lost = d.last_status === "death" ? t("detail.gateway_lost") : d.last_status === MASK ? MASK
      : typeof d.last_status === "string" && alarm.occurred_at ? t("detail.gateway_silent", { at: EC.fmtTime(alarm.occurred_at) }) : null;
    return [id !== null ? t("detail.gateway", { id }) : null, lost];
  }

  // kind -> (alarm, detail) -> the pieces of its line (null: nothing to say); a Map, so that no kind reaches a
  // property every object has ("constructor").
  const KINDS = new Map([
    ["vitals", (a, d) => vitals(d)],
    ["bed_exit", (a, d) => bedExit(d)],
    ["fall", (a, d) => fall(d)],
    ["sos", (a, d) => [position(d)]],
    ["wander", (a, d) => wander(d)],
    ["device_offline", fault],
    ["device_low_battery", lowBattery],
    ["device_sensor_error", fault],
    ["device_tamper", fault],
    ["gateway_offline", gateway],
  ]);

  // The line for an alarm, or "" when there is nothing to add to its kind.
  function detailText(alarm) {
    const d = alarm && alarm.detail;
    if (!d || typeof d !== "object" || Array.isArray(d)) return "";
    if (d.unreadable === true) return t("detail.unreadable");
    const of = KINDS.get(alarm.kind);
    if (!of) return "";
    return of(alarm, d).filter((piece) => typeof piece === "string" && piece).join(t("detail.sep"));
  }

  window.BoardDetail = { detailText };
})();
