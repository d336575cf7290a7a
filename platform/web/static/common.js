// Shared by every page: texts (zh-CN by default, English), the session, API calls, the page header with the
// language switch and logout, formatting of times in the homes' zone, and the ARIA live region.
// Every text from the data is set with textContent, never as HTML.
"use strict";

(function () {
  const SESSION_KEY = "eldercare.session";
  const LANG_KEY = "eldercare.lang";
  const ZONE = "Asia/Shanghai"; // the homes' time zone: every time is shown as the home sees it
  const LANDING = { staff: "/board", head: "/board", family: "/family", regulator: "/regulator", admin: "/regulator" };

  // No form of the platform is sent by the browser itself: each page's script sends it through the API. A form
  // submitted before its page's script has attached its handler (texts and session still loading) would
  // otherwise load the page again with its fields, a password or a phone number, in the address.
  document.addEventListener("submit", (event) => {
    if (event.target.method !== "dialog") event.preventDefault();
  }, true);

  const params = new URLSearchParams(window.location.search);
  let lang = params.get("lang") || window.localStorage.getItem(LANG_KEY) || "zh-CN";
  if (lang !== "zh-CN" && lang !== "en") lang = "zh-CN";
  let texts = {};
  let fallback = {};
  const langListeners = [];

  function t(key, values) {
    let text = texts[key] !== undefined ? texts[key] : fallback[key] !== undefined ? fallback[key] : key;
    for (const [name, value] of Object.entries(values || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  // A text for a code of the data (alarm kind, outcome ...): its translation if there is one, else the code.
  function tCode(prefix, code) {
    if (code === null || code === undefined || code === "") return "";
    const key = prefix + "." + code;
    return texts[key] !== undefined || fallback[key] !== undefined ? t(key) : String(code);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child);
    }
    return node;
  }

  function applyTexts(root) {
    document.documentElement.lang = lang;
    for (const node of (root || document).querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of (root || document).querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
    for (const node of (root || document).querySelectorAll("[data-i18n-placeholder]")) node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    const title = document.querySelector("title[data-i18n-title]");
    if (title) document.title = t(title.dataset.i18nTitle) + " · " + t("app_name");
  }

  async function loadTexts() {
    const load = async (code) => {
      const reply = await fetch("/i18n/" + code + ".json", { headers: { Accept: "application/json" } });
      if (!reply.ok) throw new Error("texts " + code + ": " + reply.status);
      return reply.json();
    };
    fallback = await load("zh-CN");
    texts = lang === "zh-CN" ? fallback : await load(lang);
  }

  async function setLang(next) {
    lang = next;
    window.localStorage.setItem(LANG_KEY, lang);
    await loadTexts();
    applyTexts();
    renderHeader();
    for (const listener of langListeners) listener(lang);
  }

  // --- session ----------------------------------------------------------------------------------------
  function session() {
    try {
      const found = JSON.parse(window.localStorage.getItem(SESSION_KEY) || "null");
      if (found && found.token && new Date(found.expires_at) > new Date()) return found;
    } catch (_) { /* a damaged entry is the same as none */ }
    return null;
  }

  function saveSession(login) {
    window.localStorage.setItem(SESSION_KEY, JSON.stringify({ token: login.token, expires_at: login.expires_at, user: login.user }));
  }

  function toLogin() {
    window.localStorage.removeItem(SESSION_KEY);
    const next = window.location.pathname + window.location.search;
    window.location.assign("/login?next=" + encodeURIComponent(next));
  }

  class ApiError extends Error {
    constructor(status, detail, errors) {
      super(detail || String(status));
      this.status = status;
      this.errors = errors || [];
    }
  }

  // One request with the session's token; a 401 goes to the login page, any other failure is an ApiError.
  async function send(path, opts, accept) {
    const current = session();
    const headers = { Accept: accept };
    if (current) headers.Authorization = "Bearer " + current.token;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(path, {
      method: opts.method || "GET",
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    });
    if (reply.status === 401 && !opts.noRedirect) {
      toLogin();
      throw new ApiError(401, t("session_expired"));
    }
    if (!reply.ok) {
      let body = null;
      try { body = await reply.json(); } catch (_) { body = null; }
      const reasons = body && body.errors ? body.errors.map((e) => e.field + ": " + e.reason).join("; ") : "";
      const error = new ApiError(reply.status, (body && body.detail) || String(reply.status), body && body.errors);
      if (reasons) error.message += " (" + reasons + ")";
      error.retryAfter = reply.headers.get("Retry-After");
      throw error;
    }
    return reply;
  }

  async function api(path, options) {
    const reply = await send(path, options || {}, "application/json");
    if (reply.status === 204) return null;
    try { return await reply.json(); } catch (_) { return null; }
  }

  // A file from the API (an export, a PDF) saved under the name the server gives it. A plain link cannot carry
  // the session's token, so the file is fetched and handed to the browser as a download; a failure is shown in
  // `errorWhere` (an element or its id), which is hidden again on the next try.
  async function download(path, errorWhere) {
    const errorNode = typeof errorWhere === "string" ? document.getElementById(errorWhere) : errorWhere;
    errorNode.hidden = true;
    let reply;
    let blob;
    try {
      reply = await send(path, {}, "*/*");
      blob = await reply.blob();
    } catch (e) {
      showError(errorNode, e);
      return;
    }
    const named = /filename="([^"]+)"/.exec(reply.headers.get("Content-Disposition") || "");
    const link = el("a", { href: URL.createObjectURL(blob), download: named ? named[1] : "download" });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  }

  async function logout() {
    try { await api("/api/v1/auth/logout", { method: "POST", noRedirect: true }); } catch (_) { /* the session ends here anyway */ }
    window.localStorage.removeItem(SESSION_KEY);
    window.location.assign("/login");
  }

  // --- formatting -------------------------------------------------------------------------------------
  function locale() { return lang === "en" ? "en-GB" : "zh-CN"; }

  function fmtTime(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat(locale(), { timeZone: ZONE, hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }

  function fmtDateTime(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat(locale(), {
      timeZone: ZONE, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
    }).format(new Date(iso));
  }

  function fmtDate(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat(locale(), { timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(iso));
  }

  function fmtMinutes(total) {
    const n = Math.max(0, Math.floor(total));
    if (n < 60) return t("minutes", { n });
    return t("hours_minutes", { h: Math.floor(n / 60), m: n % 60 });
  }

  function fmtAgo(iso) {
    if (!iso) return t("never");
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return t("ago_seconds");
    if (s < 3600) return t("ago_minutes", { n: Math.floor(s / 60) });
    if (s < 86400) return t("ago_hours", { n: Math.floor(s / 3600) });
    return t("ago_days", { n: Math.floor(s / 86400) });
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    const n = Math.round(s);
    if (n < 60) return t("seconds", { n });
    if (n % 60 === 0 || n >= 600) return fmtMinutes(n / 60);
    return t("minutes_seconds", { m: Math.floor(n / 60), s: n % 60 });
  }

  function fmtPercent(x) {
    return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%";
  }

  function localDay(date) { // YYYY-MM-DD of a moment in the homes' zone
    return new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
  }

  // --- the live region and the header -----------------------------------------------------------------
  function announce(text) {
    const live = document.getElementById("live");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(() => { live.textContent = text; }, 50); // a change of content is what gets read out
  }

  let headerUser = null;
  function renderHeader() {
    const slot = document.getElementById("user-tools");
    if (!slot) return;
    slot.replaceChildren(...[
      headerUser ? el("span", { class: "who", text: headerUser.username + " · " + tCode("role", headerUser.role) }) : null,
      el("button", { type: "button", class: "tool", id: "lang-switch", lang: lang === "zh-CN" ? "en" : "zh-CN", onclick: () => setLang(lang === "zh-CN" ? "en" : "zh-CN") }, t("other_lang")),
      headerUser ? el("button", { type: "button", class: "tool", id: "logout", onclick: logout }, t("logout")) : null,
    ].filter(Boolean));
  }

  function showError(where, error) {
    const node = typeof where === "string" ? document.getElementById(where) : where;
    if (!node) return;
    node.hidden = false;
    node.textContent = error.status === 404 || error.status === 403 ? t("not_found_or_denied") : t("error_load", { reason: error.message });
  }

  // Start a page: texts, then (unless the page is public) the session; resolves with the user.
  async function start(options) {
    const opts = options || {};
    await loadTexts();
    applyTexts();
    if (opts.public) { renderHeader(); return null; }
    if (!session()) { toLogin(); return new Promise(() => {}); }
    const me = await api("/api/v1/auth/me");
    headerUser = me;
    renderHeader();
    if (opts.roles && !opts.roles.includes(me.role)) {
      window.location.assign(LANDING[me.role] || "/login");
      return new Promise(() => {});
    }
    return me;
  }

  window.EC = {
    t, tCode, el, api, download, ApiError, start, logout, session, saveSession, applyTexts, announce, showError,
    fmtTime, fmtDateTime, fmtDate, fmtMinutes, fmtAgo, fmtSeconds, fmtPercent, localDay,
    onLang: (fn) => langListeners.push(fn),
    get lang() { return lang; },
    LANDING, ZONE,
  };
})();
