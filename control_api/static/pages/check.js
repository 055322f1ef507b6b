// The device and connection check (issue 13): camera preview, microphone level (Web Audio
// AnalyserNode), a test tone, and whether this device reaches openvisit and can make video calls;
// when something fails, what to do, in plain words. Anyone may use it, signed in or not: the
// picture and sound stay on the device. Signed in, "Test my connection" places a short test call
// to the media server (POST /v1/device-checks, docs/signaling.md section 8), which sends the
// picture and sound straight back; getStats() measures the round trip, loss, frame rate and
// bitrate, and the verdict (good / weak / failed) says what to do. Nothing is recorded.
import { language } from "../lib/i18n.js";
import { api, startPage, t } from "../lib/layout.js";

const $ = (id) => document.getElementById(id);
const HEARD = 8;            // meter level (0-100) that counts as "we hear you"
const QUIET_AFTER_MS = 10000;

const state = { stream: null, audio: null, meterTimer: null, quietTimer: null, peak: 0, camera: "idle", mic: "idle",
  net: "idle" };
// The test call: its connection, socket, timer, the getStats() samples, and its result state.
const loop = { running: false, pc: null, ws: null, timer: null, began: 0, connectedAt: null, samples: [], last: null,
  state: "idle", remote: null };

const { session } = await startPage("check");

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
  const all = [state.camera, state.mic, state.net, ...(loop.state === "idle" ? [] : [loop.state])];
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
  if (loop.running) stopLoopback("stopped");
  stopDevices();
  setCamera("idle", t("camera.off"));
  setMic("idle", t("mic.off"));
  $("summary").hidden = true;
  $("stop").hidden = true;
  $("start").focus();
});
$("camera-select").addEventListener("change", () => start({ video: true, audio: false }));
$("mic-select").addEventListener("change", () => start({ video: false, audio: true }));
window.addEventListener("pagehide", () => {
  if (loop.running) stopLoopback("stopped");
  stopDevices();
});

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

// ------------------------------------------------------------------ test call (loopback)

const MEASURE_MS = 12000;    // how long the test call measures once the picture comes back
const CONNECT_MS = 10000;    // no connection to the media server by then: UDP is probably blocked
const NO_MEDIA_MS = 10000;   // connected, but no picture back by then
const GOOD = { rttMs: 300, lossPct: 3, fps: 15, kbps: 150 };

const number = (value, digits = 0) => new Intl.NumberFormat(language(), { maximumFractionDigits: digits,
  minimumFractionDigits: digits }).format(value);

function showNumbers(m) {
  const set = (id, value, text) => {
    $(id).textContent = value === null ? "–" : text;
    if (value === null) delete $(id).dataset.value;
    else $(id).dataset.value = `${value}`;
  };
  set("loop-rtt", m.rttMs, t("loop.ms", { value: number(m.rttMs || 0) }));
  set("loop-loss", m.lossPct, t("loop.pct", { value: number(m.lossPct || 0, 1) }));
  set("loop-fps", m.fps, t("loop.fpsValue", { value: number(m.fps || 0) }));
  set("loop-bitrate", m.kbps, t("loop.kbps", { value: number(m.kbps || 0) }));
}

/** One getStats() look: cumulative counters, and this moment's round trip and frame rate. */
async function sample(pc) {
  const s = { at: performance.now(), rtt: null, videoBytes: 0, videoFrames: 0, fps: null, received: 0, lost: 0,
    audioPackets: 0, upLoss: null };
  (await pc.getStats()).forEach((r) => {
    if (r.type === "candidate-pair" && r.state === "succeeded" && r.nominated && r.currentRoundTripTime !== undefined) {
      s.rtt = r.currentRoundTripTime;
    } else if (r.type === "inbound-rtp") {
      s.received += r.packetsReceived || 0;
      s.lost += Math.max(0, r.packetsLost || 0);
      if (r.kind === "video") {
        s.videoBytes += r.bytesReceived || 0;
        s.videoFrames += r.framesDecoded || r.framesReceived || 0;
        if (r.framesPerSecond !== undefined) s.fps = r.framesPerSecond;
      } else if (r.kind === "audio") {
        s.audioPackets += r.packetsReceived || 0;
      }
    } else if (r.type === "remote-inbound-rtp") {  // the server's view of what this device sent
      if (r.fractionLost !== undefined) s.upLoss = Math.max(s.upLoss || 0, r.fractionLost);
      if (s.rtt === null && r.roundTripTime !== undefined) s.rtt = r.roundTripTime;
    }
  });
  return s;
}

/** The measured numbers from the samples since the picture came back. */
function measure() {
  const withVideo = loop.samples.filter((s) => s.videoFrames > 0);
  const rtts = loop.samples.map((s) => s.rtt).filter((v) => v !== null).sort((a, b) => a - b);
  const last = loop.samples.at(-1);
  const m = { rttMs: rtts.length ? Math.round(rtts[Math.floor(rtts.length / 2)] * 1000) : null, lossPct: null,
    fps: null, kbps: null, video: Boolean(withVideo.length), audio: Boolean(last && last.audioPackets) };
  if (last && last.received + last.lost > 0) {
    const down = (100 * last.lost) / (last.received + last.lost);
    m.lossPct = Math.max(down, 100 * (last.upLoss || 0));
  }
  if (withVideo.length >= 2) {
    const first = withVideo[0];
    const end = withVideo.at(-1);
    const seconds = (end.at - first.at) / 1000;
    if (seconds > 0) {
      m.kbps = Math.round(((end.videoBytes - first.videoBytes) * 8) / seconds / 1000);
      const recent = withVideo.slice(-3);
      const span = (recent.at(-1).at - recent[0].at) / 1000;
      m.fps = recent.at(-1).fps !== null ? Math.round(recent.at(-1).fps)
        : span > 0 ? Math.round((recent.at(-1).videoFrames - recent[0].videoFrames) / span) : null;
    }
  }
  return m;
}

function verdict(kind, reason, m = null) {
  const box = $("loop-verdict");
  box.dataset.state = kind === "good" ? "ok" : kind === "weak" ? "warn" : "failed";
  box.dataset.verdict = kind;
  const lines = [t(`loop.verdict.${kind}`)];
  if (kind === "weak" && m) {
    if (m.rttMs !== null && m.rttMs > GOOD.rttMs) lines.push(t("loop.why.rtt", { value: number(m.rttMs) }));
    if (m.lossPct !== null && m.lossPct > GOOD.lossPct) lines.push(t("loop.why.loss", { value: number(m.lossPct, 1) }));
    if (m.fps !== null && m.fps < GOOD.fps) lines.push(t("loop.why.fps", { value: number(m.fps) }));
    if (m.kbps !== null && m.kbps < GOOD.kbps) lines.push(t("loop.why.kbps", { value: number(m.kbps) }));
    if (!m.audio) lines.push(t("loop.why.audio"));
  }
  if (reason) lines.push(t(`loop.fix.${reason}`));
  box.replaceChildren(...lines.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  box.hidden = false;
  loop.state = box.dataset.state;
  if (reason) {
    const part = { camera: "denied", udp: "udp", nomedia: "nomedia", weak: "network", server: "network" }[reason];
    document.querySelectorAll(".help details").forEach((d) => { d.open = false; });
    if (part && $(`help-${part}`)) $(`help-${part}`).open = true;
  }
  summarize();
}

function closeCall() {
  clearInterval(loop.timer);
  loop.timer = null;
  loop.running = false;
  if (loop.ws && loop.ws.readyState <= WebSocket.OPEN) {
    try {
      if (loop.ws.readyState === WebSocket.OPEN) loop.ws.send(JSON.stringify({ type: "leave" }));
    } catch { /* closing anyway */ }
    loop.ws.close();
  }
  if (loop.pc) loop.pc.close();
  loop.ws = null;
  loop.pc = null;
  // The picture that came back ends with the call: no black box is left behind.
  $("loop-video").srcObject = null;
  $("loop-figure").hidden = true;
  $("loop-grid").classList.remove("live");
  $("loop-stop").hidden = true;
  $("loop-start").disabled = false;
  $("loop-start").textContent = t("loop.again");
}

/** End the test call: `done` (measured), `stopped` (by the person), or a failure reason. */
function stopLoopback(outcome) {
  if (!loop.running) return;
  const m = measure();
  closeCall();
  showNumbers(m);
  if (outcome === "done" || (outcome === "stopped" && m.video && m.fps !== null)) {
    const weak = (m.rttMs !== null && m.rttMs > GOOD.rttMs) || (m.lossPct !== null && m.lossPct > GOOD.lossPct)
      || (m.fps !== null && m.fps < GOOD.fps) || (m.kbps !== null && m.kbps < GOOD.kbps) || !m.audio;
    result("loop-status", "ok", t("loop.measured"));
    verdict(weak ? "weak" : "good", weak ? "weak" : null, m);
  } else if (outcome === "stopped") {
    result("loop-status", "idle", t("loop.stopped"));
    loop.state = "idle";
  } else {
    result("loop-status", "failed", t(`loop.failedStatus.${outcome}`));
    verdict("failed", outcome, m);
  }
}

async function tick() {
  if (!loop.running || !loop.pc) return;
  const pc = loop.pc;
  const elapsed = performance.now() - loop.began;
  const s = await sample(pc).catch(() => null);
  if (!loop.running || pc !== loop.pc) return;
  if (s) loop.samples.push(s);
  const connected = ["connected", "completed"].includes(pc.iceConnectionState);
  if (connected && loop.connectedAt === null) loop.connectedAt = performance.now();
  const m = measure();
  showNumbers(m);
  if (!connected && (elapsed > CONNECT_MS || pc.iceConnectionState === "failed")) {
    stopLoopback("udp");
  } else if (connected && !m.video && performance.now() - loop.connectedAt > NO_MEDIA_MS) {
    stopLoopback("nomedia");
  } else if (m.video) {
    const first = loop.samples.find((x) => x.videoFrames > 0);
    result("loop-status", "working", t("loop.measuring"));
    if (performance.now() - first.at >= MEASURE_MS) stopLoopback("done");
  }
}

async function runLoopback() {
  if (!session) {
    $("loop-signin").hidden = false;
    return;
  }
  const button = $("loop-start");
  button.disabled = true;
  $("loop-verdict").hidden = true;
  loop.state = "working";
  loop.samples = [];
  loop.connectedAt = null;
  showNumbers({ rttMs: null, lossPct: null, fps: null, kbps: null });
  result("loop-status", "working", t("loop.starting"));
  const live = () => (state.stream ? state.stream.getTracks().filter((tr) => tr.readyState === "live") : []);
  if (!live().some((tr) => tr.kind === "video")) await start();
  const tracks = live();
  if (!tracks.some((tr) => tr.kind === "video")) {
    button.disabled = false;
    result("loop-status", "failed", t("loop.failedStatus.camera"));
    verdict("failed", "camera");
    return;
  }
  let grant;
  try {
    grant = await api("/v1/device-checks", { method: "POST" });
  } catch (err) {
    button.disabled = false;
    if (err.status === 429) {
      const minutes = Math.max(1, Math.ceil((err.problem.retry_after_seconds || 60) / 60));
      result("loop-status", "warn", t("loop.tooMany", { count: minutes }));
      loop.state = "idle";
    } else if (err.status === 409) {
      result("loop-status", "warn", t("loop.busy"));
      loop.state = "idle";
    } else if (err.status === 401) {
      result("loop-status", "idle", "");
      $("loop-signin").hidden = false;
      loop.state = "idle";
    } else {
      result("loop-status", "failed", t("loop.failedStatus.server"));
      verdict("failed", "server");
    }
    return;
  }
  const pc = new RTCPeerConnection({ iceServers: grant.ice_servers });
  const remote = new MediaStream();
  for (const track of tracks) pc.addTrack(track, state.stream);
  pc.ontrack = (event) => {
    remote.addTrack(event.track);
    const video = $("loop-video");
    if (video.srcObject !== remote) video.srcObject = remote;
    video.play().catch(() => {});
  };
  const ws = new WebSocket(grant.signaling_url);
  Object.assign(loop, { running: true, pc, ws, began: performance.now(), remote });
  $("loop-figure").hidden = false;
  $("loop-grid").classList.add("live");
  $("loop-stop").hidden = false;
  ws.onopen = () => ws.send(JSON.stringify({ type: "check", token: grant.join_token }));
  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "check_joined") {
      result("loop-status", "working", t("loop.connecting"));
      pc.onicecandidate = (e) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify(e.candidate ? { type: "candidate", candidate: e.candidate.toJSON() }
          : { type: "end-of-candidates" }));
      };
      await pc.setLocalDescription(await pc.createOffer());
      ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    } else if (msg.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } else if (msg.type === "ended") {
      stopLoopback(measure().video ? "done" : "nomedia");
    } else if (msg.type === "error" && msg.code !== "bad-candidate") {
      if (msg.code === "check-open") {
        closeCall();
        result("loop-status", "warn", t("loop.busy"));
        loop.state = "idle";
      } else {
        stopLoopback("server");
      }
    }
  };
  ws.onclose = () => {
    if (loop.running && loop.ws === ws) stopLoopback(measure().video ? "done" : "server");
  };
  loop.timer = setInterval(tick, 1000);
}

if (!session) $("loop-signin-link").href = `/app/?next=${encodeURIComponent(location.pathname + location.search)}`;
$("loop-signin").hidden = Boolean(session);
$("loop-start").disabled = !session;
$("loop-start").addEventListener("click", () => runLoopback());
$("loop-stop").addEventListener("click", () => stopLoopback("stopped"));
