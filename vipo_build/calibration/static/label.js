"use strict";
// The labelling page: one screen per pair; the server decides which pair and which side is left.
const RATER_COOKIE = "vipo_rater";
const $ = (id) => document.getElementById(id);
let rater = readCookie(RATER_COOKIE);
let current = null;  // the screen shown
let shownAt = 0;     // when both candidates were ready
let busy = false;    // one request at a time: a double press answers once

function readCookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

async function call(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  if (!response.ok) throw Object.assign(new Error(`${response.status}: ${await response.text()}`), {status: response.status});
  return response.json();
}

function candidate(slot, modality) {
  const element = document.createElement(modality === "video" ? "video" : "img");
  if (modality === "video") Object.assign(element, {muted: true, loop: true, playsInline: true, preload: "auto"});
  else element.alt = "candidate";
  element.src = slot.url;
  return element;
}

function ready(element) {
  if (element.tagName === "VIDEO") {
    return element.readyState >= 3 ? Promise.resolve() : new Promise((ok) => element.addEventListener("canplay", ok, {once: true}));
  }
  return element.complete ? Promise.resolve() : new Promise((ok) => element.addEventListener("load", ok, {once: true}));
}

function show(state) {
  const {answered, open} = state.progress;
  $("progress").textContent = `${rater}: ${answered} answered, ${open} open`;
  current = state.screen;
  shownAt = 0;  // timed from when both new candidates are ready
  $("screen").hidden = !current;
  $("done").hidden = Boolean(current);
  if (!current) return;
  const screen = $("screen");
  Object.assign(screen.dataset, {key: current.key, loaded: "0"});
  $("category").textContent = current.category.replaceAll("_", " ");
  $("prompt").textContent = current.prompt;
  $("rubric").textContent = current.rubric;
  const shown = [current.left, current.right].map((slot, i) => {
    const figure = $(i === 0 ? "left" : "right");
    figure.dataset.slot = slot.slot;
    const element = candidate(slot, current.modality);
    figure.querySelector(".media").replaceChildren(element);
    return element;
  });
  const key = current.key;
  Promise.all(shown.map(ready)).then(() => {
    if (!current || current.key !== key) return;
    // videos start together from their first frame, once both can play
    shown.filter((e) => e.tagName === "VIDEO").forEach((v) => { v.currentTime = 0; v.play().catch(() => {}); });
    shownAt = performance.now();
    screen.dataset.loaded = "1";
  });
}

async function act(path, body) {
  if (busy) return;
  busy = true;
  try {
    show(await call(path, body));
    $("error").hidden = true;
  } catch (err) {
    $("error").textContent = String(err);
    $("error").hidden = false;
    // answered already (in another tab, say): move on to what is really next
    if (err.status === 409) show(await call(`api/next?rater=${encodeURIComponent(rater)}`));
  } finally {
    busy = false;
  }
}

function answer(pick) {
  if (!current || !shownAt) return;  // not before both candidates are shown
  act("api/answer", {rater, key: current.key, pick, seconds: (performance.now() - shownAt) / 1000});
}

function start() {
  $("login").hidden = true;
  act(`api/next?rater=${encodeURIComponent(rater)}`);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  rater = $("rater-input").value.trim();
  document.cookie = `${RATER_COOKIE}=${encodeURIComponent(rater)}; max-age=31536000; path=/; samesite=strict`;
  start();
});
$("pick-left").addEventListener("click", () => answer("left"));
$("pick-right").addEventListener("click", () => answer("right"));
$("skip").addEventListener("click", () => answer("skip"));
$("undo").addEventListener("click", () => act("api/undo", {rater}));
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || !rater) return;
  const actions = {ArrowLeft: () => answer("left"), ArrowRight: () => answer("right"), s: () => answer("skip"),
                   S: () => answer("skip"), u: () => act("api/undo", {rater}), U: () => act("api/undo", {rater}),
                   Backspace: () => act("api/undo", {rater})};
  if (actions[event.key]) {
    event.preventDefault();
    actions[event.key]();
  }
});

if (rater) start();
else $("login").hidden = false;
