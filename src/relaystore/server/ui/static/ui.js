// relaystore inspector: keeps the token in sessionStorage and fetches each view as an HTML
// fragment with an Authorization header. The token is never put in a URL, a cookie or the page.
"use strict";
(function () {
  const KEY = "relaystore.ui.token";
  const base = document.body.dataset.base || "";
  const main = document.getElementById("main");
  const login = document.getElementById("login");
  const nav = document.getElementById("nav");
  const objectUrls = [];

  function token() { return sessionStorage.getItem(KEY); }
  function headers() { return { Authorization: "Bearer " + token() }; }

  function showLogin(message) {
    nav.hidden = true; main.replaceChildren(); login.hidden = false;
    const error = document.getElementById("login-error");
    error.textContent = message || ""; error.hidden = !message;
    document.getElementById("token").focus();
  }

  function viewOf(url) {
    const rest = url.pathname.slice((base + "/ui").length).replace(/^\/+/, "");
    return rest || "overview";
  }

  function fail(body) {
    const box = document.createElement("p");
    box.className = "error"; box.id = "error";
    box.textContent = (body.error || "Error") + ": " + (body.detail || "");
    main.replaceChildren(box);
  }

  async function fetchFragment(view, search) {
    return fetch(base + "/ui/f/" + view + search, { headers: headers(), cache: "no-store", credentials: "omit" });
  }

  async function load(href, push) {
    if (!token()) { showLogin(); return; }
    const url = new URL(href, location.origin);
    const response = await fetchFragment(viewOf(url), url.search);
    if (response.status === 401) { sessionStorage.removeItem(KEY); showLogin("The token was refused."); return; }
    const body = response.ok ? await response.text() : null;
    const error = response.ok ? null : await response.json().catch(() => ({ detail: response.statusText }));
    login.hidden = true; nav.hidden = false;
    objectUrls.splice(0).forEach(URL.revokeObjectURL);
    // the address changes only once the page shows what it names
    if (error) fail(error); else main.innerHTML = body; // server-rendered, escaped; never runs scripts
    if (push) history.pushState(null, "", url.pathname + url.search);
    if (error) return;
    document.body.dataset.view = viewOf(url);
    hydrate(main);
  }

  function hydrate(root) {
    root.querySelectorAll("img[data-ref]").forEach(async (img) => {
      const query = new URLSearchParams({ ref: img.dataset.ref, part: img.dataset.part || "content" });
      const response = await fetchFragment("blob", "?" + query);
      if (!response.ok) { img.alt = "preview refused"; return; }
      const url = URL.createObjectURL(await response.blob());
      objectUrls.push(url); img.src = url;
    });
  }

  async function expand(details) {
    const slot = details.querySelector(":scope > .lazy");
    if (!slot || slot.dataset.loaded) return;
    slot.dataset.loaded = "1";
    const query = new URLSearchParams({ agent: details.dataset.agent, path: details.dataset.path });
    const response = await fetchFragment("trie", "?" + query);
    slot.innerHTML = response.ok ? await response.text() : "<p class=\"error\">could not load</p>";
  }

  document.addEventListener("click", (event) => {
    const anchor = event.target.closest("a");
    if (!anchor || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const href = anchor.getAttribute("href");
    if (href && href.startsWith(base + "/ui")) { event.preventDefault(); load(href, true); }
  });

  document.addEventListener("toggle", (event) => {
    const details = event.target;
    if (details.matches && details.matches("details[data-path]") && details.open) expand(details);
  }, true);

  document.addEventListener("submit", (event) => {
    const form = event.target;
    event.preventDefault();
    if (form.id === "login-form") {
      const input = document.getElementById("token");
      sessionStorage.setItem(KEY, input.value.trim()); input.value = "";
      const here = viewOf(new URL(location.href)) === "overview" ? base + "/ui/overview" : location.href;
      load(here, false);
      return;
    }
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value !== "") params.append(name, value);
    load(base + "/ui/" + form.dataset.page + "?" + params, true);
  });

  document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(); });
  window.addEventListener("popstate", () => load(location.href, false));
  if (token()) load(location.href, false); else showLogin();
})();
