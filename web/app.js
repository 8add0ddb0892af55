// The sign-in page: no build step, no dependencies.
"use strict";
const $ = (id) => document.getElementById(id);
const next = new URLSearchParams(location.search).get("next");

async function message(res) {
  try {
    return (await res.json()).error.message;
  } catch {
    return "sign-in failed (" + res.status + ")";
  }
}

function show(signedIn) {
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
}

function renderProviders(list) {
  const box = $("providers");
  box.replaceChildren();
  for (const m of list) {
    if (m.type === "password") continue;
    const a = document.createElement("a");
    a.href = m.url + (next && next.startsWith("/") && !next.startsWith("//") ? "?next=" + encodeURIComponent(next) : "");
    a.textContent = "Sign in with " + m.name;
    if (m.id === "github") {
      a.id = "signin-github";
    } else {
      a.className = "signin-oidc";
      a.dataset.provider = m.name;
    }
    box.append(a);
  }
}

async function refresh() {
  const session = await fetch("/auth/session", { credentials: "same-origin" });
  if (session.ok) {
    const s = await session.json();
    $("whoami").textContent = s.user.username;
    show(true);
    return;
  }
  show(false);
  const providers = await fetch("/auth/providers");
  if (providers.ok) {
    renderProviders((await providers.json()).data);
  } else {
    $("notice").textContent = await message(providers);
  }
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("error").textContent = "";
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  $("password").value = "";
  if (!res.ok) {
    $("error").textContent = await message(res);
    return;
  }
  if (next && next.startsWith("/") && !next.startsWith("//")) {
    location.assign(next);
    return;
  }
  refresh();
});

$("logout").addEventListener("click", async () => {
  await fetch("/auth/logout", { method: "POST", credentials: "same-origin" });
  refresh();
});

refresh();
