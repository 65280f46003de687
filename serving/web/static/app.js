// The crew's page: sign in, prompt a shot, pick a look, render and review; consent for rights holders.
import { ApiError, del, get, post, query } from "./api.js";
import { Player } from "./player.js";

const $ = (selector) => document.querySelector(selector);
const COLOURS = ["#ffd23f", "#3fe0ff", "#ff7ad9", "#8cff5a", "#ff9f43", "#b39dff"];
const state = { me: null, clip: null, file: null, subjects: [], active: 0, style: null, painting: null,
                job: null, socket: null, review: null, mode: "shot", enrolClicks: [] };

function say(selector, text, bad = false) {
  const el = $(selector);
  el.textContent = text;
  el.classList.toggle("error", bad);
}

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- sign-in -------------------------------------------------------------------------------
async function boot() {
  try {
    start(await get("/web/api/me"));
  } catch (error) {
    if (!(error instanceof ApiError) || ![401, 403].includes(error.status)) throw error;
    $("#signin").hidden = false;
  }
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("#signin-error", "");
  try {
    const me = await post("/web/session", { json: { key: $("#key").value } });
    $("#key").value = "";
    $("#signin").hidden = true;
    start(me);
  } catch (error) {
    say("#signin-error", error.status === 401 ? "That key is not known to this service." : error.message, true);
  }
});

$("#signout").addEventListener("click", async () => {
  await del("/web/session");
  location.reload();
});

function start(me) {
  state.me = me;
  $("#who").textContent = `${me.name} · ${me.role}`;
  $("#app").hidden = false;
  const roles = me.role === "admin" ? ["operator", "rights_holder"] : [me.role];
  for (const button of document.querySelectorAll("#tabs button")) {
    button.hidden = !roles.some((r) => button.classList.contains(r));
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  if (roles.includes("operator")) {
    loadClipList("#clips");
    loadStyles();
    refreshJobs();
    showTab("shot");
  } else {
    showTab("consent");
  }
}

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const panel of document.querySelectorAll("aside > section")) panel.hidden = panel.dataset.panel !== name;
  const leavingReview = state.mode === "render" && name !== "render";
  state.mode = name;
  if (leavingReview && state.clip) openShotPlayer(player.n);
  if (name === "look") refreshThumbs();
  if (name === "render") { refreshJobs(); updateRenderSummary(); }
  if (name === "consent") refreshConsent();
  showAfter(name === "look" && state.afterUrl && $("#show-after").checked);
}

// ---- the player ----------------------------------------------------------------------------
const player = new Player($("#player"), { onFrame, onPrompt });
player.drawPrompts = (n) => (state.mode === "consent"
  ? state.enrolClicks.filter((c) => c.frame === n).map((c) => ({ points: [c.point], color: "#ff7ad9" }))
  : state.subjects.map((s) => ({ ...(s.frames.get(n) || {}), color: s.colour })).filter((p) => p.box || p.points));

function onFrame(n) {
  $("#scrub").value = n;
  $("#frame-number").value = n;
  if (state.review) $(".frame-box .after").src = `/web/api/jobs/${state.review.id}/frame?${query({ n })}`;
  else { state.afterUrl = null; showAfter(false); }
  player.redraw();
  if (!state.review) (ahead.has(n) ? refreshMatte() : refreshMatteSoon());
  if (state.mode === "look") refreshThumbsSoon();
}

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) && event.target.type !== "range"
    && event.target.type !== "checkbox";
  if (typing || event.ctrlKey || event.metaKey) return;
  if (player.key(event)) event.preventDefault();
});
$("#first-frame").addEventListener("click", () => player.step(player.clip.first - player.n));
$("#back").addEventListener("click", () => player.step(-1));
$("#fwd").addEventListener("click", () => player.step(1));
$("#play").addEventListener("click", () => player.play(1));
$("#play-back").addEventListener("click", () => player.play(-1));
$("#pause").addEventListener("click", () => player.stop());
$("#scrub").addEventListener("input", (e) => { player.stop(); player.show(Number(e.target.value)); });
$("#frame-number").addEventListener("change", (e) => { player.stop(); player.show(Number(e.target.value)); });

function setRange(first, last) {
  for (const input of [$("#scrub"), $("#frame-number")]) { input.min = first; input.max = last; }
  $("#frame-of").textContent = `${first}–${last}`;
}

function openShotPlayer(frame) {
  state.review = null;
  player.clip = state.clip;
  player.frameUrl = (n) => `/web/api/frame?${query({ clip: state.clip.clip, n })}`;
  setRange(state.clip.first, state.clip.last);
  player.show(frame ?? state.clip.first);
}

// wipe: the "after" picture over the frame, cut at the divider
function showAfter(visible) {
  $(".frame-box .after").hidden = !visible;
  $(".frame-box .matte").style.visibility = visible ? "hidden" : "";
  $(".frame-box .divider").hidden = !visible;
  $(".wipe-row").hidden = !visible;
  applyWipe();
}
function applyWipe() {
  const at = Number($("#wipe").value);
  $(".frame-box .after").style.clipPath = `inset(0 0 0 ${at}%)`;
  $(".frame-box .divider").style.left = `${at}%`;
}
$("#wipe").addEventListener("input", applyWipe);

// ---- clips ---------------------------------------------------------------------------------
async function loadClipList(selector) {
  const select = $(selector);
  for (const clip of await get("/web/api/clips")) select.append(el("option", { value: clip.clip }, clip.name));
}

$("#clips").addEventListener("change", async (event) => {
  if (!event.target.value) return;
  say("#clip-status", "Opening…");
  try {
    useClip(await get(`/web/api/clip?${query({ clip: event.target.value })}`), null);
  } catch (error) { say("#clip-status", error.message, true); }
});

$("#upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  say("#clip-status", `Uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    useClip(await post("/web/api/clips", { form }), file);
  } catch (error) { say("#clip-status", `${file.name}: ${error.message}`, true); }
});

function useClip(clip, file) {
  state.clip = clip;
  state.file = file;
  state.subjects = [];
  addSubject();
  say("#clip-status", `${clip.name}: ${clip.width}×${clip.height}, ${clip.fps} fps, frames ${clip.first}–${clip.last}`
      + (clip.audio ? `, audio ${clip.audio}` : ""));
  $("#range-first").value = clip.first;
  $("#range-last").value = clip.last;
  openShotPlayer(clip.first);
}

// ---- subjects and prompts ------------------------------------------------------------------
function addSubject() {
  state.subjects.push({ colour: COLOURS[state.subjects.length % COLOURS.length], frames: new Map() });
  state.active = state.subjects.length - 1;
  renderSubjects();
}
$("#add-subject").addEventListener("click", addSubject);
$("#clear-frame").addEventListener("click", () => {
  state.subjects[state.active]?.frames.delete(player.n);
  renderSubjects();
  player.redraw();
  refreshMatte();
});

function describe(prompts) {
  const parts = [];
  if (prompts.box) parts.push("box");
  if (prompts.points.length) parts.push(`${prompts.points.length}+`);
  if (prompts.negatives.length) parts.push(`${prompts.negatives.length}−`);
  return parts.join(" ");
}

function renderSubjects() {
  const list = $("#subjects");
  list.replaceChildren(...state.subjects.map((subject, i) => el("li",
    { class: i === state.active ? "active" : "", onclick: () => { state.active = i; renderSubjects(); } },
    el("span", { class: "swatch", style: `background:${subject.colour}` }),
    el("strong", {}, `Subject ${i + 1}`),
    el("span", { class: "what" }, [...subject.frames].map(([f, p]) => `frame ${f}: ${describe(p)}`).join(" · ") || "no prompts yet"))));
  updateRenderSummary();
}

function onPrompt(prompt) {
  if (state.mode === "consent") { addEnrolClick(prompt); return; }
  if (state.review || !state.clip) return;
  const subject = state.subjects[state.active];
  const prompts = subject.frames.get(player.n) || { box: null, points: [], negatives: [] };
  if (prompt.kind === "box") prompts.box = prompt.box.map(Math.round);
  else (prompt.kind === "point" ? prompts.points : prompts.negatives).push(prompt.point.map(Math.round));
  subject.frames.set(player.n, prompts);
  ahead = new Map();
  renderSubjects();
  player.redraw();
  refreshMatte();
}

function promptsForApi() {
  return state.subjects.flatMap((s) => [...s.frames].map(([frame, p]) => ({ frame, box: p.box, points: p.points, negatives: p.negatives })));
}

// ---- matte preview -------------------------------------------------------------------------
let matteRequest = 0;
let ahead = new Map();  // frame -> overlay of the last "preview ahead" (tracked from its key frame)
async function refreshMatte() {
  const mine = ++matteRequest;
  const here = promptsForApi().filter((p) => p.frame === player.n);
  if ($("#show-matte").checked && !here.length && ahead.has(player.n) && !state.review) {
    player.matte.hidden = false;
    player.matte.src = ahead.get(player.n).url;
    say("#matte-status", `Tracked matte of frame ${player.n}: subject covers ${(ahead.get(player.n).coverage * 100).toFixed(1)}% of the frame.`);
    return;
  }
  if (!$("#show-matte").checked || !here.length || !state.clip || state.review) {
    player.setMatte(null);
    say("#matte-status", here.length ? "" : "No prompts on this frame.");
    return;
  }
  say("#matte-status", "Finding the subject…");
  const started = performance.now();
  try {
    const response = await post("/web/api/preview/matte", { json: { clip: state.clip.clip, frame: player.n, subjects: here }, raw: true });
    const blob = await response.blob();
    if (mine !== matteRequest) return;
    player.setMatte(URL.createObjectURL(blob));
    const cover = Number(response.headers.get("X-Matte-Coverage")) * 100;
    say("#matte-status", `Matte of frame ${player.n}: subject covers ${cover.toFixed(1)}% of the frame `
        + `(${((performance.now() - started) / 1000).toFixed(1)} s).`);
  } catch (error) {
    if (mine === matteRequest) { player.setMatte(null); say("#matte-status", error.message, true); }
  }
}
const refreshMatteSoon = debounce(refreshMatte, 250);

$("#preview-ahead").addEventListener("click", async () => {
  const here = promptsForApi().filter((p) => p.frame === player.n);
  if (!state.clip || !here.length) return say("#matte-status", "Prompt a subject on this frame first; it is tracked from here.", true);
  say("#matte-status", "Tracking over the next frames…");
  try {
    const result = await post("/web/api/preview/ahead?count=12", { json: { clip: state.clip.clip, frame: player.n, subjects: here } });
    ahead = new Map(Object.entries(result.overlays).map(([n, url], i) => [Number(n), { url, coverage: result.coverage[i] }]));
    say("#matte-status", `Tracked frames ${result.first}–${result.last} in ${result.seconds} s; step through them with → or L.`);
  } catch (error) { say("#matte-status", error.message, true); }
});
$("#show-matte").addEventListener("change", refreshMatte);
$("#refresh-matte").addEventListener("click", () => { $("#show-matte").checked = true; refreshMatte(); });

// ---- look ----------------------------------------------------------------------------------
let styles = [];
async function loadStyles() {
  styles = await get("/web/api/styles");
  renderStyles();
}

function renderStyles() {
  const choices = [...styles.map((s) => ({ key: `style:${s.name}`, label: s.name.replace("_", " "), title: s.description, style: s.name })),
                   ...(state.painting ? [{ key: "painting", label: `painting: ${state.painting.name}`, title: "colours of your painting", painting: state.painting.painting }] : [])];
  $("#styles").replaceChildren(...choices.map((choice) => el("button", {
    class: (choice.style && state.style === choice.style) || (choice.painting && state.useP && !state.style) ? "active" : "",
    title: choice.title, "data-key": choice.key,
    onclick: () => { state.style = choice.style || null; state.useP = Boolean(choice.painting); renderStyles(); updateRenderSummary();
                     state.afterUrl = null; showAfter(false); },
  }, el("img", { alt: choice.label, "data-style": choice.style || "", "data-painting": choice.painting || "" }), el("span", {}, choice.label))));
  refreshThumbs();
}

function refreshThumbs() {
  if (!state.clip || state.mode !== "look") return;
  for (const img of document.querySelectorAll("#styles img")) {
    img.src = `/web/api/preview/thumb?${query({ clip: state.clip.clip, n: player.n, style: img.dataset.style || null, painting: img.dataset.painting || null })}`;
  }
}
const refreshThumbsSoon = debounce(refreshThumbs, 400);

$("#painting").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  try {
    state.painting = { ...(await post("/web/api/paintings", { form })), name: file.name };
    state.style = null;
    state.useP = true;
    say("#painting-name", file.name);
    renderStyles();
    updateRenderSummary();
  } catch (error) { say("#painting-name", error.message, true); }
});

function look() {
  return { style: state.style, painting: state.useP && !state.style ? state.painting?.painting : null };
}

$("#look-preview").addEventListener("click", async () => {
  if (!state.clip) return say("#look-status", "Open a clip first.", true);
  const { style, painting } = look();
  if (!style && !painting) return say("#look-status", "Pick a style or a painting first.", true);
  say("#look-status", "Rendering this frame…");
  try {
    const response = await post("/web/api/preview/look", { json: { clip: state.clip.clip, frame: player.n, subjects: promptsForApi(), style, painting }, raw: true });
    if (state.afterUrl) URL.revokeObjectURL(state.afterUrl);
    state.afterUrl = URL.createObjectURL(await response.blob());
    $(".frame-box .after").src = state.afterUrl;
    $("#show-after").checked = true;
    showAfter(true);
    say("#look-status", `Frame ${player.n}: before on the left, after on the right; drag the wipe.`);
  } catch (error) { say("#look-status", error.message, true); }
});
$("#show-after").addEventListener("change", (e) => showAfter(e.target.checked && Boolean(state.afterUrl)));

// ---- render --------------------------------------------------------------------------------
function renderConfig() {
  const config = {};
  const prompted = promptsForApi().filter((p) => p.box || p.points.length);
  if (prompted.length > 1) {
    throw new Error("The renderer tracks one subject from one key frame; keep the prompts of one subject on one frame.");
  }
  if (prompted.length) {
    const p = prompted[0];
    const subject = [];
    if (p.box) subject.push(`box:${p.box.join(",")}@${p.frame}`);
    for (const [x, y] of p.points) subject.push(`point:${x},${y}@${p.frame}`);
    for (const [x, y] of p.negatives) subject.push(`negpoint:${x},${y}@${p.frame}`);
    config.segment = { subject };
  }
  const { style, painting } = look();
  if (style) config.restyle = { style };
  else if (painting) config.restyle = { style_image: state.painting.path };
  return config;
}

function updateRenderSummary() {
  if (!state.clip) return say("#render-summary", "Open a clip on the Shot tab first.");
  try {
    const config = renderConfig();
    const subject = config.segment ? `subject ${config.segment.subject.join(" + ")}` : "no subject (the whole frame is restyled)";
    const lookText = config.restyle ? (config.restyle.style ? `style ${config.restyle.style}` : "colours of your painting") : "no style";
    say("#render-summary", `${state.clip.name}: ${subject}; ${lookText}.`);
  } catch (error) { say("#render-summary", error.message, true); }
}

$("#render").addEventListener("click", async () => {
  if (!state.clip) return say("#progress-text", "Open a clip first.", true);
  let config;
  try { config = renderConfig(); } catch (error) { return say("#render-summary", error.message, true); }
  const form = new FormData();
  form.append("config", JSON.stringify(config));
  form.append("frames", `${$("#range-first").value}-${$("#range-last").value}`);
  form.append("matte", $("#want-matte").checked ? "true" : "false");
  if (state.file) form.append("file", state.file);
  else form.append("path", state.clip.clip);
  $("#progress").hidden = false;
  say("#progress-text", state.file ? "Sending the clip…" : "Submitting…");
  try {
    const job = await post("/v1/jobs", { form });
    follow(job);
    refreshJobs();
  } catch (error) { say("#progress-text", error.message, true); }
});

function follow(job) {
  state.job = job;
  state.socket?.close();
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/web/api/jobs/${job.id}/progress`);
  state.socket = socket;
  socket.onmessage = (event) => showProgress(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (event.code >= 4000) say("#progress-text", `Progress stopped: ${event.reason}`, true);
    refreshJobs();
  };
  showProgress(job);
}

function showProgress(job) {
  state.job = job;
  const { done, total } = job.frames;
  $("#progress").hidden = false;
  $("#progress-bar").max = total;
  $("#progress-bar").value = done;
  const fps = job.frames_per_second;
  const left = fps > 0 ? Math.ceil((total - done) / fps) : null;
  const parts = [`${job.state}`, `${done} of ${total} frames`];
  if (job.state === "running" || job.state === "assembling") {
    parts.push(fps > 0 ? `${fps.toFixed(1)} frames/s` : "starting");
    if (left !== null) parts.push(`about ${left} s left`);
  }
  if (job.state === "done") parts.push(`${fps.toFixed(1)} frames/s`);
  if (job.error) parts.push(job.error);
  say("#progress-text", parts.join(" · "), job.state === "failed");
  $("#cancel").hidden = ["done", "failed", "cancelled"].includes(job.state);
  $("#progress-text").dataset.state = job.state;
}

$("#cancel").addEventListener("click", async () => {
  if (!state.job) return;
  try { showProgress(await del(`/v1/jobs/${state.job.id}`)); refreshJobs(); } catch (error) { say("#progress-text", error.message, true); }
});

async function refreshJobs() {
  if (!state.me || state.me.role === "rights_holder") return;
  const jobs = await get("/v1/jobs");
  $("#jobs tbody").replaceChildren(...jobs.map((job) => el("tr", { class: state.review?.id === job.id ? "selected" : "", "data-job": job.id },
    el("td", {}, el("code", {}, job.id.slice(0, 8))),
    el("td", {}, `${job.frames.first}–${job.frames.last}`),
    el("td", { class: `state-${job.state}` }, job.state === "running" ? `running ${job.frames.done}/${job.frames.total}` : job.state),
    el("td", {},
      job.state === "done" ? el("button", { onclick: () => review(job) }, "Review") : null,
      ["queued", "running"].includes(job.state) ? el("button", { onclick: () => follow(job) }, "Follow") : null))));
}

async function review(job) {
  state.review = job;
  refreshJobs();
  $("#review").hidden = false;
  $("#review-id").textContent = job.id.slice(0, 8);
  $("#download-output").href = job.links.output;
  $("#download-matte").hidden = !job.links.matte;
  if (job.links.matte) $("#download-matte").href = job.links.matte;
  $("#review-video").src = `/web/api/jobs/${job.id}/review.mp4`;
  player.clip = { clip: null, first: job.frames.first, last: job.frames.last, fps: state.clip?.fps || 25,
                  width: state.clip?.width || 1, height: state.clip?.height || 1 };
  player.frameUrl = (n) => `/web/api/jobs/${job.id}/frame?${query({ n, which: "source" })}`;
  setRange(job.frames.first, job.frames.last);
  player.setMatte(null);
  player.show(job.frames.first);
  showAfter(true);
  say("#stage-status", `Reviewing job ${job.id.slice(0, 8)}: source on the left, result on the right. Drag the wipe; J/K/L plays.`);
  const [manifest, signed] = await Promise.all([get(job.links.manifest), get(`/web/api/jobs/${job.id}/provenance`)]);
  showProvenance(manifest, signed);
}

function showProvenance(manifest, signed) {
  const config = manifest.config || {};
  const rows = [
    ["input sha256", el("code", {}, manifest.input_sha256.slice(0, 16) + "…")],
    ["frames", `${manifest.frames[0]}–${manifest.frames[1]} (${manifest.output.frames} written)`],
    ["subject", (config.segment?.subject || []).join(" + ") || "none"],
    ["segmenter", config.segment?.backend || "auto"],
    ["restyle", config.restyle?.style || (config.restyle?.style_image ? "painting" : "none")],
    ["restyler", config.restyle?.backend || "auto"],
    ["chunks", manifest.chunks.map((c) => `${c.write_first}–${c.last} (${c.attempts} attempt${c.attempts === 1 ? "" : "s"})`).join(", ")],
    ["output sha256", el("code", {}, manifest.output.sha256.slice(0, 16) + "…")],
    ...(manifest.matte ? [["matte sha256", el("code", {}, manifest.matte.sha256.slice(0, 16) + "…")]] : []),
    ["finished", new Date(manifest.finished_at * 1000).toLocaleString()],
    ["models", Object.entries(signed.model_hashes || {}).map(([k, v]) => `${k} ${v.slice(0, 10)}…`).join(", ") || "none loaded (embedded OpenCV backends)"],
    ["grants", (signed.grant_ids || []).join(", ") || "none needed (no likeness edit)"],
    ["C2PA", signed.c2pa_state ? `${signed.c2pa_state}: ${signed.c2pa_actions.join(", ")}` : "none"],
    ["signatures", el("span", { class: signed.ok ? "ok" : "bad", id: "provenance-verdict" },
      signed.ok ? `verify (signer ${signed.signer_key})` : `do NOT verify: ${signed.problems.join("; ")}`)],
  ];
  $("#provenance").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// ---- consent (rights holders) -------------------------------------------------------------
let consentClipsLoaded = false;
async function refreshConsent() {
  if (!consentClipsLoaded) { consentClipsLoaded = true; loadClipList("#consent-clips"); }
  if (!$("#grant-until").value) $("#grant-until").value = new Date(Date.now() + 365 * 864e5).toISOString().slice(0, 10);
  const [subjects, grants, ledger] = await Promise.all([get("/v1/consent/subjects"), get("/v1/consent/grants"), get("/web/api/consent/ledger")]);
  $("#consent-subjects").replaceChildren(...subjects.map((s) => el("li", {}, el("strong", {}, s.subject), ` · ${s.references} reference faces`)));
  if (!subjects.length) $("#consent-subjects").append(el("li", { class: "hint" }, "No subjects enrolled yet."));
  const chosen = $("#grant-subject").value;
  $("#grant-subject").replaceChildren(...subjects.map((s) => el("option", { value: s.subject }, s.subject)));
  if (chosen) $("#grant-subject").value = chosen;
  $("#grants tbody").replaceChildren(...grants.map((g) => el("tr", { "data-grant": g.grant_id },
    el("td", {}, g.subject), el("td", {}, g.project), el("td", {}, g.operations.join(", ")),
    el("td", {}, g.valid_until.slice(0, 10)), el("td", { class: g.state === "active" ? "ok" : "bad" }, g.state),
    el("td", {}, g.state === "active" ? el("button", { onclick: () => revoke(g) }, "Revoke") : null))));
  say("#ledger-verify", ledger.ok ? `Ledger verifies: ${ledger.entries} entries, hash chain and signatures intact${ledger.head ? ` (head ${ledger.head.slice(0, 12)}…)` : ""}.`
                                  : `Ledger does NOT verify: ${ledger.problems.join("; ")}`, !ledger.ok);
  $("#ledger-verify").classList.toggle("ok", ledger.ok);
  $("#ledger").replaceChildren(...ledger.shown.map((e) => el("li", { value: e.seq, "data-kind": e.kind },
    el("strong", {}, e.kind), ` ${e.ts.slice(0, 19).replace("T", " ")} · ${e.about}`)));
}

$("#consent-clips").addEventListener("change", async (event) => {
  if (!event.target.value) return;
  try {
    state.clip = await get(`/web/api/clip?${query({ clip: event.target.value })}`);
    state.enrolClicks = [];
    renderEnrolClicks();
    openShotPlayer(state.clip.first);
    say("#enrol-status", `${state.clip.name}: scrub to a frame with the face and click it.`);
  } catch (error) { say("#enrol-status", error.message, true); }
});

function addEnrolClick(prompt) {
  if (prompt.kind !== "point" || !state.clip) return;
  state.enrolClicks = state.enrolClicks.filter((c) => c.frame !== player.n);  // one face per frame
  state.enrolClicks.push({ frame: player.n, point: prompt.point.map(Math.round) });
  renderEnrolClicks();
  player.redraw();
}

function renderEnrolClicks() {
  $("#enrol-clicks").replaceChildren(...state.enrolClicks.map((c) => el("li", {}, `frame ${c.frame}: face at ${c.point.join(", ")}`)));
}

$("#enrol").addEventListener("click", async () => {
  const name = $("#enrol-name").value.trim();
  if (!name || !state.enrolClicks.length) return say("#enrol-status", "Give a name and click the face on at least one frame.", true);
  say("#enrol-status", "Finding the faces and enrolling…");
  try {
    const result = await post("/web/api/consent/enrol", { json: { name, clip: state.clip.clip,
      clicks: state.enrolClicks.map((c) => ({ frame: c.frame, x: c.point[0], y: c.point[1] })) } });
    say("#enrol-status", `Enrolled ${result.subject} from ${result.references} face${result.references === 1 ? "" : "s"} (ledger entry ${result.ledger_seq}).`);
    state.enrolClicks = [];
    renderEnrolClicks();
    player.redraw();
    await refreshConsent();
    $("#grant-subject").value = result.subject;
  } catch (error) { say("#enrol-status", error.message, true); }
});

$("#grant").addEventListener("click", async () => {
  try {
    await post("/v1/consent/grants", { json: { subject: $("#grant-subject").value, project: $("#grant-project").value,
                                              ops: $("#grant-ops").value, until: $("#grant-until").value } });
    await refreshConsent();
  } catch (error) { say("#enrol-status", error.message, true); }
});

async function revoke(grant) {
  try {
    await post(`/v1/consent/grants/${grant.grant_id}/revoke`, { json: { reason: "revoked in the web page" } });
    await refreshConsent();
  } catch (error) { say("#enrol-status", error.message, true); }
}

boot();
