// The login page: exchanges username and password for a session, then goes where the user was going (or to
// the page of their role: staff to the board, families to the family page, regulators to their view).
"use strict";

(function () {
  // Without its texts the page still logs in (it shows the texts' keys), so a failure to load them is logged only.
  const started = EC.start({ public: true }).catch((e) => console.error(e));
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

  // Attached before the texts are loaded, so a user quicker than the page is logged in all the same.
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("login-button");
    if (button.disabled) return;
    button.disabled = true;
    await started;
    error.hidden = true;
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      error.textContent = EC.t("login_missing");
      error.hidden = false;
      button.disabled = false;
      return;
    }
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
  started.then(() => { document.body.dataset.ready = "true"; });
})();
