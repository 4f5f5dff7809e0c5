// facedex page: plain JavaScript, no build step, no outside requests.
// Every call goes to this service's /v1 API (the same JSON as the CLI's --json).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("facedex-key") || "", gallery: null, urls: [], people: [] };

// ---- the API -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message, body) { super(message); this.status = status; this.code = code; this.body = body; }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["Authorization"] = "Bearer " + state.key;
  let res;
  try {
    res = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  } catch (e) {
    throw new ApiError(0, "network", "The service cannot be reached (" + e.message + ").");
  }
  if (res.status === 401) {
    showKeybox(state.key ? "That key was refused." : "");
    throw new ApiError(401, "auth", "An API key is needed.");
  }
  if (options.raw && res.ok) return res;
  let body = null;
  const type = res.headers.get("content-type") || "";
  if (type.includes("json")) body = await res.json();
  if (!res.ok && !(options.accept || []).includes(res.status)) {
    const err = body && body.error ? body.error : { code: "http." + res.status, message: res.statusText };
    if (res.status === 503 && res.headers.get("retry-after")) err.message += " (retry in " + res.headers.get("retry-after") + " s)";
    throw new ApiError(res.status, err.code, err.message, body);
  }
  return { status: res.status, body, headers: res.headers };
}

function objectUrl(blob) { const u = URL.createObjectURL(blob); state.urls.push(u); return u; }
function releaseUrls() { state.urls.forEach((u) => URL.revokeObjectURL(u)); state.urls = []; }
const pct = (v) => Math.round(v * 100) + "%";
const sim = (v) => (typeof v === "number" ? v.toFixed(3) : "–");
const fmtTime = (s) => { const m = Math.floor(s / 60); const r = (s - m * 60).toFixed(1).padStart(4, "0"); return m + ":" + r; };
const mb = (n) => (n / 1048576).toFixed(n < 10485760 ? 1 : 0) + " MB";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function showError(err) {
  const box = $("error");
  box.textContent = err.message + (err.code && !["network", "auth"].includes(err.code) ? " [" + err.code + "]" : "");
  box.hidden = false;
}

// ---- key -----------------------------------------------------------------------------------
function showKeybox(message) {
  $("keybox").hidden = false;
  $("key-error").hidden = !message;
  $("key-error").textContent = message || "";
  $("key").focus();
}

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.key = $("key").value.trim();
  sessionStorage.setItem("facedex-key", state.key);
  $("key").value = "";
  try {
    await loadGallery();
    $("keybox").hidden = true;
    if (!$("view-people").hidden) loadPeople();
  } catch (e) { /* the key box says why */ }
});

// ---- gallery header ----------------------------------------------------------------------------
const scopes = ["read", "enroll", "admin"];
function can(scope) { return state.gallery && scopes.indexOf(state.gallery.caller.scope) >= scopes.indexOf(scope); }

function describeThreshold(t) {
  if (t.method === "default") return "default for the embedder — not calibrated for this gallery";
  if (t.method === "manual") return "set by hand";
  let s = "calibrated for " + pct(t.fpir_target || 0) + " of strangers named";
  if (t.calibrated_at) s += " on " + t.calibrated_at.slice(0, 10);
  if (t.low_confidence) s += " — rough: few people";
  return s;
}

async function loadGallery() {
  const { body } = await api("/v1/gallery");
  state.gallery = body;
  $("g-name").textContent = body.gallery;
  $("g-totals").textContent = body.totals.people + (body.totals.people === 1 ? " person, " : " people, ") + body.totals.faces + " faces";
  $("g-threshold").textContent = body.threshold.value.toFixed(3);
  const method = $("g-method");
  method.textContent = "(" + describeThreshold(body.threshold) + (body.threshold.stale ? "; the gallery changed since — calibrate again" : "") + ")";
  method.className = body.threshold.stale || body.threshold.method === "default" ? "stale" : "muted";
  $("calibrate").hidden = !can("admin");
  $("new-person").hidden = !can("enroll");
  return body;
}

$("calibrate").addEventListener("click", async () => {
  const b = $("calibrate");
  b.disabled = true; b.textContent = "Calibrating…";
  try {
    const { body } = await api("/v1/calibrate", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    toast("Threshold now " + body.threshold.value.toFixed(3) + " (" + describeThreshold(body.threshold) + ")");
    await loadGallery();
  } catch (e) { toast("Calibration failed: " + e.message); }
  finally { b.disabled = false; b.textContent = "Calibrate"; }
});

// ---- views ------------------------------------------------------------------------------------
function show(view) {
  for (const name of ["identify", "people"]) {
    $("view-" + name).hidden = name !== view;
    $("tab-" + name).setAttribute("aria-pressed", String(name === view));
  }
  if (view === "people") loadPeople();
  history.replaceState(null, "", view === "people" ? "#people" : "#");
}
$("tab-identify").addEventListener("click", () => show("identify"));
$("tab-people").addEventListener("click", () => show("people"));

// ---- drop zones --------------------------------------------------------------------------------
function dropZone(node, onFiles) {
  node.addEventListener("dragover", (ev) => { ev.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (ev) => {
    ev.preventDefault(); node.classList.remove("over");
    const files = [...(ev.dataTransfer ? ev.dataTransfer.files : [])];
    if (files.length) onFiles(files);
  });
}
// Dropping a file anywhere else must not navigate away from the page.
window.addEventListener("dragover", (ev) => ev.preventDefault());
window.addEventListener("drop", (ev) => ev.preventDefault());

// ---- identify ----------------------------------------------------------------------------------
$("pick").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => { if ($("file").files.length) identify($("file").files[0]); $("file").value = ""; });
dropZone($("drop"), (files) => identify(files[0]));

function isVideo(file) { return file.type.startsWith("video/") || /\.(mp4|m4v|mov|mkv|webm|avi|mpe?g|ts|flv|wmv|3gp|ogv)$/i.test(file.name); }

async function identify(file) {
  $("error").hidden = true;
  $("result").hidden = true;
  releaseUrls();
  const limits = state.gallery ? state.gallery.limits : null;
  const video = isVideo(file);
  if (limits) {
    const limit = video ? limits.max_video_bytes : limits.max_photo_bytes;
    if (file.size > limit) { showError({ message: file.name + " is " + mb(file.size) + "; this service takes at most " + mb(limit) + (video ? " per video." : " per photo."), code: "media.too_large" }); return; }
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const annotate = $("annotate").checked ? "true" : "false";
  const progress = $("progress");
  progress.hidden = false; $("progress-bar").removeAttribute("value"); $("progress-text").textContent = "Looking at " + file.name + "…";
  try {
    let { status, body } = await api("/v1/identify?annotate=" + annotate, { method: "POST", body: form, accept: [413, 415, 422] });
    if (status === 202) body = await waitForJob(body);
    renderResult(body, file);
  } catch (e) { showError(e); }
  finally { progress.hidden = true; }
}

async function waitForJob(job) {
  for (;;) {
    const d = job.progress || {};
    if (d.frames_total) { $("progress-bar").max = d.frames_total; $("progress-bar").value = d.frames_done; }
    $("progress-text").textContent = job.status === "queued" ? "Waiting for a worker…" :
      "Working on " + job.input + (d.frames_done ? " — frame " + d.frames_done + (d.frames_total ? " of " + d.frames_total : "") : "") + "…";
    if (job.status === "done") return job.result;
    if (job.status === "failed") throw new ApiError(job.status_code || 500, job.error.code, job.error.message);
    await new Promise((r) => setTimeout(r, 1000));
    job = (await api(job.url)).body;
  }
}

function renderResult(res, file) {
  $("result").hidden = false;
  $("photo-result").hidden = true;
  $("video-result").hidden = true;
  const title = $("result-title");
  if (res.error) {
    title.textContent = res.input + ": not identified";
    showError({ message: res.error.message, code: res.error.code });
    title.focus();
    return;
  }
  if (res.kind === "video") renderVideo(res, file); else renderPhoto(res, file);
  title.focus();
}

function faceText(f) {
  if (f.name !== null) return f.name;
  return "unknown";
}

function renderPhoto(res, file) {
  const n = res.faces.length, named = res.faces.filter((f) => f.name !== null).length;
  $("result-title").textContent = res.input + ": " + (n === 0 ? "no face found" :
    n + (n === 1 ? " face" : " faces") + ", " + named + " named, " + (n - named) + " unknown") +
    " (threshold " + res.threshold.value.toFixed(3) + ")";
  $("photo-result").hidden = false;
  const img = $("photo"), boxes = $("boxes"), list = $("face-list"), detail = $("face-detail");
  boxes.replaceChildren(); list.replaceChildren(); detail.hidden = true;
  const names = res.faces.map(faceText);
  img.alt = n ? "The photo, with " + (n === 1 ? "one face marked: " : n + " faces marked: ") + names.join(", ") : "The photo; no face was found";
  img.onload = () => {
    const W = img.naturalWidth, H = img.naturalHeight;
    img.classList.toggle("small", W < 400 && W >= H);
    res.faces.forEach((f, i) => {
      const [x, y, w, h] = f.box;
      const label = (i + 1) + ". " + names[i];
      const b = el("button", {
        type: "button", class: "face " + (f.name === null ? "unknown" : "known"), "aria-expanded": "false",
        "aria-label": "Face " + (i + 1) + ": " + describeFace(f),
        onclick: () => select(i, true), onmouseenter: () => select(i, false), onfocus: () => select(i, false),
      }, el("span", { class: "label", text: label, "aria-hidden": "true" }));
      b.style.left = (100 * x / W) + "%"; b.style.top = (100 * y / H) + "%";
      b.style.width = (100 * w / W) + "%"; b.style.height = (100 * h / H) + "%";
      boxes.append(b);
    });
  };
  img.src = objectUrl(file);
  res.faces.forEach((f, i) => {
    list.append(el("li", {},
      el("span", { class: "name " + (f.name === null ? "unknown" : "known"), text: names[i] }),
      " — similarity " + sim(f.similarity) + " ",
      f.candidates.length ? el("button", { type: "button", text: "closest people", onclick: () => select(i, true) }) : null));
  });
  if (res.annotated) {
    list.after(el("p", { id: "annotated-link" }, el("a", { href: "#", text: "Annotated copy", onclick: async (ev) => {
      ev.preventDefault(); const r = await api(res.annotated, { raw: true }); window.open(objectUrl(await r.blob()));
    } })));
  }

  function select(i, pinned) {
    const f = res.faces[i];
    [...boxes.children].forEach((c, j) => c.setAttribute("aria-expanded", String(j === i)));
    detail.replaceChildren(
      el("h3", { text: "Face " + (i + 1) + ": " + names[i] }),
      el("p", { class: "muted", id: "face-why", text: why(f, res.threshold.value) }),
      f.candidates.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "Person", scope: "col" }), el("th", { text: "Similarity", scope: "col" }))),
        el("tbody", {}, ...f.candidates.map((c) => el("tr", {}, el("td", { text: c.name }), el("td", { text: sim(c.similarity) })))))
        : el("p", { text: "The gallery is empty." }));
    detail.hidden = false;
    if (pinned) detail.setAttribute("tabindex", "-1");
  }
}

// Why a face got its answer. The threshold is compared with the score: the similarity less the
// crowding penalty of a face that resembles many enrolled people at once (see the README).
function why(f, threshold) {
  const t = threshold.toFixed(3);
  const crowded = typeof f.score === "number" && f.score < f.similarity - 5e-5;
  if (f.name !== null) {
    return "Similarity " + sim(f.similarity) + (crowded ? " (score " + sim(f.score) + " after the crowding penalty)" : "")
      + " ≥ threshold " + t + ". Candidates:";
  }
  if (crowded && f.similarity >= threshold) {
    return "The closest person's similarity " + sim(f.similarity) + " reaches the threshold (" + t + "), but this face "
      + "also resembles many other enrolled people, and its score after that crowding penalty, " + sim(f.score)
      + ", does not: unknown. Closest:";
  }
  return "No one in the gallery reaches the threshold (" + t + "). Closest:";
}

function describeFace(f) {
  if (f.name !== null) return f.name + ", similarity " + sim(f.similarity);
  const c = f.candidates[0];
  return "unknown" + (c ? ", closest " + c.name + " at " + sim(c.similarity) : "");
}

function renderVideo(res, file) {
  const named = res.tracks.filter((t) => t.name !== null).length;
  $("result-title").textContent = res.input + ": " + res.tracks.length + " face track" + (res.tracks.length === 1 ? "" : "s") +
    ", " + res.people.length + (res.people.length === 1 ? " person" : " people") + " named, " + (res.tracks.length - named) + " unknown";
  $("video-result").hidden = false;
  const video = $("video");
  video.src = objectUrl(file);
  $("video-summary").textContent = fmtTime(res.duration) + " long, " + res.frames_sampled + " frames analysed (" +
    (res.sample_fps ? res.sample_fps + " per second" : "every frame") + "); threshold " + res.threshold.value.toFixed(3) + ".";
  const seek = (t) => el("button", { type: "button", class: "secondary", text: fmtTime(t), "aria-label": "play from " + fmtTime(t),
    onclick: () => { video.currentTime = t; video.play().catch(() => {}); } });
  const presence = $("presence").tBodies[0];
  presence.replaceChildren(...(res.people.length ? res.people.map((p) => el("tr", {},
    el("td", { class: "name known", text: p.name }),
    el("td", {}, ...p.ranges.flatMap(([a, b]) => [seek(a), "–" + fmtTime(b) + " "])),
    el("td", { text: p.seconds.toFixed(1) }))) : [el("tr", {}, el("td", { colspan: "3", text: "No enrolled person was recognised." }))]));
  const tracks = $("tracks").tBodies[0];
  tracks.replaceChildren(...res.tracks.map((t) => el("tr", {},
    el("td", { text: String(t.track) }),
    el("td", { class: "name " + (t.name === null ? "unknown" : "known"), text: t.name === null ? "unknown" : t.name }),
    el("td", {}, seek(t.first_seen), "–" + fmtTime(t.last_seen)),
    el("td", { text: String(t.frames) }),
    el("td", { text: sim(t.similarity) }),
    el("td", { text: t.candidates.map((c) => c.name + " " + sim(c.similarity)).join(", ") || "–" }))));
  const files = $("video-files"), sheet = $("sheet");
  files.replaceChildren(); sheet.hidden = true;
  if (res.contact_sheet) {
    api(res.contact_sheet, { raw: true }).then((r) => r.blob()).then((b) => {
      sheet.src = objectUrl(b); sheet.alt = "Contact sheet: the best face of each track, with its name"; sheet.hidden = false;
    }).catch(() => {});
  }
  if (res.annotated) {
    files.append(el("a", { href: "#", text: "Download the annotated copy", onclick: async (ev) => {
      ev.preventDefault(); const r = await api(res.annotated, { raw: true });
      const a = el("a", { href: objectUrl(await r.blob()), download: res.annotated.split("/").pop() }); a.click();
    } }));
  }
}

// ---- people ------------------------------------------------------------------------------------
async function loadPeople() {
  let body;
  try { ({ body } = await api("/v1/people")); } catch (e) { $("people-summary").textContent = e.message; return; }
  state.people.forEach((u) => URL.revokeObjectURL(u));
  state.people = [];
  const list = $("people");
  $("people-summary").textContent = body.people.length ? body.people.length + (body.people.length === 1 ? " person" : " people") +
    " in " + body.gallery + ". Drop photos on a person to add them." : "No one is enrolled yet: add a person above.";
  list.replaceChildren(...body.people.map(personCard));
  if (state.gallery) { state.gallery.totals = body.totals; loadGallery().catch(() => {}); }
}

function personCard(p) {
  const thumb = el("div", { class: "thumb", role: "img", "aria-label": "No photo of " + p.name, text: p.name.slice(0, 1).toUpperCase() });
  const path = "/v1/people/" + encodeURIComponent(p.name);
  api(path + "/thumbnail", { raw: true, accept: [404] }).then(async (r) => {
    if (!r.ok) return;
    const u = URL.createObjectURL(await r.blob());
    state.people.push(u);
    thumb.replaceWith(el("img", { class: "thumb", src: u, alt: "Face of " + p.name, width: "96", height: "96" }));
  }).catch(() => {});
  const input = el("input", { type: "file", accept: "image/*", multiple: true, hidden: true, "aria-label": "Photos of " + p.name });
  input.addEventListener("change", () => { if (input.files.length) enroll(p.name, [...input.files]); input.value = ""; });
  const card = el("li", { class: "person", "data-name": p.name },
    thumb,
    el("h3", { text: p.name }),
    el("p", { class: "muted", text: p.faces + (p.faces === 1 ? " face" : " faces") + " from " + p.sources + (p.sources === 1 ? " photo" : " photos") }),
    input,
    el("div", { class: "actions" },
      can("enroll") ? el("button", { type: "button", class: "small secondary", text: "Add photos", "aria-label": "Add photos of " + p.name, onclick: () => input.click() }) : null,
      can("admin") ? el("button", { type: "button", class: "small danger", text: "Erase", "aria-label": "Erase " + p.name, onclick: () => erase(p) }) : null));
  if (can("enroll")) dropZone(card, (files) => enroll(p.name, files));
  return card;
}

async function enroll(name, files) {
  const limits = state.gallery ? state.gallery.limits : null;
  const form = new FormData();
  const tooBig = [];
  for (const f of files) {
    if (limits && f.size > limits.max_photo_bytes) tooBig.push(f.name); else form.append("file", f, f.name);
  }
  if (tooBig.length) toast("Too large (over " + mb(limits.max_photo_bytes) + "): " + tooBig.join(", "));
  if (!form.has("file")) return;
  toast("Adding " + form.getAll("file").length + " photo(s) of " + name + "…");
  try {
    const { body } = await api("/v1/people/" + encodeURIComponent(name) + "/faces", { method: "POST", body: form, accept: [413, 415, 422] });
    const failed = body.items.filter((i) => i.status === "failed");
    let text = "Added " + body.added + " photo(s) of " + name + (body.skipped ? ", " + body.skipped + " already enrolled" : "");
    if (failed.length) text += "; " + failed.length + " not added: " + failed.map((i) => i.reason).join("; ");
    if (body.warnings.length) text += " — " + body.warnings.join(" ");
    toast(text);
  } catch (e) { toast("Could not add photos: " + e.message); }
  await loadPeople();
}

$("new-person").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("new-name").value.trim();
  const files = [...$("new-files").files];
  if (!name || !files.length) return;
  $("new-submit").disabled = true;
  try { await enroll(name, files); $("new-name").value = ""; $("new-files").value = ""; }
  finally { $("new-submit").disabled = false; }
});

function confirmDialog(title, text, okText) {
  const d = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okText;
  return new Promise((resolve) => {
    const done = (v) => { d.close(); $("confirm-ok").onclick = $("confirm-cancel").onclick = d.oncancel = null; resolve(v); };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    d.oncancel = () => done(false);
    d.showModal();
    $("confirm-cancel").focus();
  });
}

async function erase(p) {
  const ok = await confirmDialog("Erase " + p.name + "?",
    "All " + p.faces + " of their faces, the names of their " + p.sources + " source photos and their thumbnail are removed from the gallery for good. This cannot be undone.",
    "Erase " + p.name);
  if (!ok) return;
  try {
    const { body } = await api("/v1/people/" + encodeURIComponent(p.name), { method: "DELETE" });
    const r = body.results[0];
    toast(r.name + " erased: " + r.faces + " faces from " + r.sources + " photos.");
  } catch (e) { toast("Could not erase " + p.name + ": " + e.message); }
  await loadPeople();
  $("people-summary").focus && $("tab-people").focus();
}

// ---- start -----------------------------------------------------------------------------------
loadGallery().then(() => { if (location.hash === "#people") show("people"); }).catch((e) => {
  if (e.code !== "auth") showError(e);
});
