// The login page: exchanges username and password for a session, then goes where the user was going (or to
// the page of their role: staff to the board, families to the family page, regulators to their view).
"use strict";

(async function () {
  await EC.start({ public: true });
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const params = new URLSearchParams(window.location.search);

  function target(user) {
    const next = params.get("next") || "";
    // Only a path of this platform: never an address elsewhere ("//host" or a full address with a scheme).
    if (next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login")) return next;
    return EC.LANDING[user.role] || "/login";
  }

  const current = EC.session();
  if (current && current.user) {
    window.location.replace(target(current.user));
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      error.textContent = EC.t("login_missing");
      error.hidden = false;
      return;
    }
    const button = document.getElementById("login-button");
    button.disabled = true;
    try {
      const login = await EC.api("/api/v1/auth/login", { method: "POST", body: { username, password }, noRedirect: true });
      EC.saveSession(login);
      window.location.assign(target(login.user));
    } catch (e) {
      error.textContent = e.status === 429 ? EC.t("login_throttled", { s: e.retryAfter || "60" })
        : e.status === 401 ? EC.t("login_failed") : EC.t("error_load", { reason: e.message });
      error.hidden = false;
      form.password.select();
    } finally {
      button.disabled = false;
    }
  });
})();
