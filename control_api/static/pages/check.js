// The device and connection check (issue 13): camera preview, microphone level (Web Audio
// AnalyserNode), a test tone, and whether this device reaches openvisit and can make video calls;
// when something fails, what to do, in plain words. Anyone may use it, signed in or not. Nothing
// leaves the device: the picture and sound are only shown and measured here.
// The API offers no media-server loopback test, so this page places no test call.
import { startPage, t } from "../lib/layout.js";

const $ = (id) => document.getElementById(id);
const HEARD = 8;            // meter level (0-100) that counts as "we hear you"
const QUIET_AFTER_MS = 10000;

const state = { stream: null, audio: null, meterTimer: null, quietTimer: null, peak: 0, camera: "idle", mic: "idle",
  net: "idle" };

await startPage("check");

const back = new URLSearchParams(location.search).get("return");
if (back && back.startsWith("/app/") && !back.startsWith("//")) {
  $("back-link").href = back;
  $("back").hidden = false;
}

/** Show a result line: state is idle | working | ok | warn | failed (styled and read by tests). */
function result(id, status, text) {
  const node = $(id);
  node.dataset.state = status;
  node.textContent = text;
  node.hidden = !text;
}

// What went wrong, from getUserMedia's error: the help section has a part for each.
function problemOf(err) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return window.isSecureContext ? "unsupported" : "insecure";
  switch (err && err.name) {
    case "NotAllowedError": case "PermissionDeniedError": case "SecurityError": return "denied";
    case "NotFoundError": case "DevicesNotFoundError": case "OverconstrainedError": return "missing";
    case "NotReadableError": case "TrackStartError": case "AbortError": return "busy";
    default: return "other";
  }
}

const HELP = { denied: "denied", missing: "missing", busy: "busy", quiet: "quiet", network: "network" };

function explain(kind, problem) {
  const box = $("problem");
  const text = t(`problem.${problem}`, { device: t(`device.${kind}`) });
  box.replaceChildren(...[text, HELP[problem] ? t(`help.${HELP[problem]}.text`) : null].filter(Boolean)
    .map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  box.hidden = false;
  document.querySelectorAll(".help details").forEach((d) => { d.open = false; });
  const part = HELP[problem] ? $(`help-${HELP[problem]}`) : null;
  if (part) part.open = true;
}

function summarize() {
  const all = [state.camera, state.mic, state.net];
  if (all.includes("working") || all.includes("idle")) return;
  const ready = all.every((s) => s === "ok");
  $("summary").dataset.state = ready ? "ok" : "warn";
  $("summary").textContent = t(ready ? "summary.ready" : "summary.attention");
  $("summary").hidden = false;
}

function setCamera(status, text) {
  state.camera = status;
  result("camera-status", status, text);
  summarize();
}

function setMic(status, text) {
  state.mic = status;
  result("mic-status", status, text);
  summarize();
}

// ------------------------------------------------------------------ camera and microphone

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select, track] of [["videoinput", $("camera-select"), videoTrack()],
    ["audioinput", $("mic-select"), audioTrack()]]) {
    const current = track ? track.getSettings().deviceId : null;
    const found = devices.filter((d) => d.kind === kind);
    select.replaceChildren(...found.map((d, i) => new Option(d.label || t(kind === "videoinput" ? "camera.nth" : "mic.nth",
      { n: i + 1 }), d.deviceId, false, d.deviceId === current)));
    select.disabled = !found.length;
    select.parentElement.hidden = !found.length;
  }
}

const videoTrack = () => (state.stream ? state.stream.getVideoTracks()[0] : null);
const audioTrack = () => (state.stream ? state.stream.getAudioTracks()[0] : null);

function constraint(selectId) {
  const chosen = $(selectId).value;
  return chosen ? { deviceId: { exact: chosen } } : true;
}

// Ask for both at once (one permission prompt); if that fails for a reason other than a refusal,
// ask for each alone so the page can say which one is the problem.
async function openDevices({ video = true, audio = true } = {}) {
  const wanted = { video: video ? constraint("camera-select") : false, audio: audio ? constraint("mic-select") : false };
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(wanted), failed: {} };
  } catch (err) {
    if (problemOf(err) === "denied" || !(video && audio)) {
      return { stream: null, failed: { ...(video ? { camera: err } : {}), ...(audio ? { mic: err } : {}) } };
    }
  }
  const stream = new MediaStream();
  const failed = {};
  for (const [kind, key] of [["video", "camera"], ["audio", "mic"]]) {
    try {
      const one = await navigator.mediaDevices.getUserMedia({ [kind]: wanted[kind] });
      one.getTracks().forEach((track) => stream.addTrack(track));
    } catch (err) {
      failed[key] = err;
    }
  }
  return { stream: stream.getTracks().length ? stream : null, failed };
}

function showCamera(stream) {
  const preview = $("preview");
  preview.srcObject = stream;
  delete preview.dataset.playing;
  const playing = () => {
    if (!preview.videoWidth) return;
    preview.dataset.playing = "true";
    const track = videoTrack();
    setCamera("ok", t("camera.ok", { name: track ? track.label : "" }));
  };
  preview.addEventListener("playing", playing, { once: true });
  preview.addEventListener("resize", playing, { once: true });
  preview.play().catch(() => {});
}

function listen(stream) {
  stopMeter();
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  const context = new AudioCtx();
  context.resume().catch(() => {});
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  state.audio = context;
  state.peak = 0;
  const meter = $("mic-level");
  state.meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    // Speech at a normal distance is an RMS of roughly 0.02-0.2: spread that over the bar.
    const level = Math.min(100, Math.round(Math.sqrt(rms) * 160));
    meter.value = level;
    meter.textContent = `${level}`;
    if (level > state.peak) {
      state.peak = level;
      meter.dataset.peak = `${level}`;
    }
    if (level >= HEARD && state.mic !== "ok") {
      clearTimeout(state.quietTimer);
      const track = audioTrack();
      setMic("ok", t("mic.ok", { name: track ? track.label : "" }));
    }
  }, 100);
  state.quietTimer = setTimeout(() => {
    if (state.mic === "ok") return;
    setMic("warn", t("mic.quiet"));
    explain("mic", "quiet");
  }, QUIET_AFTER_MS);
}

function stopMeter() {
  clearInterval(state.meterTimer);
  clearTimeout(state.quietTimer);
  if (state.audio) state.audio.close().catch(() => {});
  state.audio = null;
  $("mic-level").value = 0;
}

function stopDevices() {
  stopMeter();
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  $("preview").srcObject = null;
  delete $("preview").dataset.playing;
}

async function start({ video = true, audio = true } = {}) {
  const button = $("start");
  button.disabled = true;
  $("problem").hidden = true;
  $("summary").hidden = true;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const problem = problemOf(null);
    setCamera("failed", t(`camera.${problem}`));
    setMic("failed", t(`mic.${problem}`));
    explain("camera", problem);
    button.disabled = false;
    return;
  }
  if (video) setCamera("working", t("camera.asking"));
  if (audio) setMic("working", t("mic.asking"));
  // Keep the kind we are not re-opening; replace the rest.
  const keep = state.stream ? state.stream.getTracks().filter((tr) => (tr.kind === "video" ? !video : !audio)) : [];
  if (state.stream) state.stream.getTracks().filter((tr) => !keep.includes(tr)).forEach((tr) => tr.stop());
  if (audio) stopMeter();
  const { stream, failed } = await openDevices({ video, audio });
  state.stream = new MediaStream([...keep, ...(stream ? stream.getTracks() : [])]);
  const problems = {};
  for (const [key, err] of Object.entries(failed)) {
    problems[key] = problemOf(err);
    (key === "camera" ? setCamera : setMic)("failed", t(`${key}.${problems[key]}`, { message: err.message || err.name }));
  }
  if (problems.camera && problems.camera === problems.mic) explain("both", problems.camera);
  else if (problems.camera) explain("camera", problems.camera);  // the camera's first: the mic's is in its card
  else if (problems.mic) explain("mic", problems.mic);
  if (videoTrack() && video) showCamera(state.stream);
  if (audioTrack() && audio) {
    setMic("working", t("mic.listening"));
    listen(new MediaStream([audioTrack()]));
  }
  if (videoTrack() || audioTrack()) {
    await fillDevices().catch(() => {});
    $("stop").hidden = false;
  }
  button.textContent = t("again");
  button.disabled = false;
}

$("start").addEventListener("click", () => start());
$("stop").addEventListener("click", () => {
  stopDevices();
  setCamera("idle", t("camera.off"));
  setMic("idle", t("mic.off"));
  $("summary").hidden = true;
  $("stop").hidden = true;
  $("start").focus();
});
$("camera-select").addEventListener("change", () => start({ video: true, audio: false }));
$("mic-select").addEventListener("change", () => start({ video: false, audio: true }));
window.addEventListener("pagehide", stopDevices);

// ------------------------------------------------------------------ speaker

$("tone").addEventListener("click", async () => {
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  const context = new AudioCtx();
  const tone = context.createOscillator();
  const gain = context.createGain();
  tone.frequency.value = 440;
  gain.gain.value = 0.2;
  tone.connect(gain).connect(context.destination);
  tone.start();
  tone.stop(context.currentTime + 0.8);
  tone.onended = () => context.close().catch(() => {});
  result("speaker-status", "ok", t("speaker.played"));
});

// ------------------------------------------------------------------ connection

async function checkConnection() {
  state.net = "working";
  result("net-status", "working", t("net.checking"));
  const times = [];
  try {
    for (let i = 0; i < 3; i += 1) {
      const began = performance.now();
      const resp = await fetch("/healthz", { cache: "no-store" });
      if (!resp.ok) throw new Error(`${resp.status}`);
      times.push(performance.now() - began);
    }
    const ms = Math.round(times.sort((a, b) => a - b)[1]);
    state.net = ms < 400 ? "ok" : "warn";
    result("net-status", state.net, t(ms < 400 ? "net.ok" : "net.slow", { ms }));
    if (state.net !== "ok") explain("net", "network");
  } catch {
    state.net = "failed";
    result("net-status", "failed", t("net.failed"));
    explain("net", "network");
  }
  const webrtc = "RTCPeerConnection" in window && "WebSocket" in window;
  result("webrtc-status", webrtc ? "ok" : "failed", t(webrtc ? "net.webrtc" : "net.noWebrtc"));
  if (!webrtc) state.net = "failed";
  summarize();
}

checkConnection();
