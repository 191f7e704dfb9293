// rmbg playground: builds one removeBackground task from the form, posts it to this gateway's
// POST /v1 (the hosted APIs' task array), and shows the result beside the original.
// Plain browser JavaScript, no build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

// A UUID v4 from crypto.getRandomValues (crypto.randomUUID exists only in secure contexts).
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const checked = (id) => $(id).checked;
const number = (id) => Number($(id).value);
const filled = (id) => $(id).value.trim() !== "";

// The OPTIONS (README, "OPTIONS" and "Output shaping"), as the task's "settings": only what the form sets,
// so the server's defaults apply to the rest.
function buildSettings() {
  const s = {};
  for (const id of ["returnOnlyMask", "postProcessMask", "preserveAlpha", "refineForeground", "crop", "shadow"]) {
    if (checked(id)) s[id] = true;
  }
  if (checked("useColour")) {
    const hex = $("colour").value;
    s.rgba = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).concat(number("colourAlpha"));
  }
  if (checked("alphaMatting")) {
    s.alphaMatting = true;
    for (const id of ["alphaMattingForegroundThreshold", "alphaMattingBackgroundThreshold", "alphaMattingErodeSize"]) {
      s[id] = number(id);
    }
  }
  if (checked("crop") && filled("cropMargin")) {
    const margin = $("cropMargin").value.trim();
    s.cropMargin = /^\d+$/.test(margin) ? Number(margin) : margin;
  }
  if (filled("outputWidth") || filled("outputHeight")) s.outputSize = [number("outputWidth"), number("outputHeight")];
  if (filled("scale")) s.scale = number("scale");
  const position = $("position").value;
  if (position === "custom") s.position = [number("positionX"), number("positionY")];
  else if (position) s.position = position;
  if (checked("shadow")) {
    s.shadowOpacity = number("shadowOpacity");
    s.shadowBlur = number("shadowBlur");
    s.shadowOffset = [number("shadowOffsetX"), number("shadowOffsetY")];
  }
  return s;
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function buildTask(image) {
  return {
    taskType: "removeBackground",
    taskUUID: uuid4(),
    inputs: { image },
    model: $("model").value,
    outputType: "dataURI",
    outputFormat: $("outputFormat").value,
    outputQuality: number("outputQuality"),
    settings: buildSettings(),
  };
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function describeErrors(body, status) {
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  if (errors.length) {
    return errors.map((e) => (e.parameter ? `${e.parameter}: ` : "") + (e.message || e.code)).join("\n");
  }
  return (body && (body.detail || body.message)) || `the gateway answered HTTP ${status}`;
}

const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

function showResult(dataURI, before) {
  const type = dataURI.slice(5, dataURI.indexOf(";"));
  $("before").src = before;
  $("result").src = dataURI;
  $("compare").hidden = false;
  const link = $("download");
  link.href = dataURI;
  link.download = `rmbg-result.${EXTENSIONS[type] || "bin"}`;
  link.hidden = false;
  return type;
}

async function run(event) {
  event.preventDefault();
  $("error").hidden = true;
  const file = $("file").files[0];
  const url = $("url").value.trim();
  if (!file && !url) {
    showError("Choose an image file or type an image URL.");
    return;
  }
  $("run").disabled = true;
  const started = performance.now();
  $("status").textContent = "Working...";
  try {
    const image = file ? await readAsDataURL(file) : url;
    const task = buildTask(image);
    $("settingsPreview").textContent = JSON.stringify({ ...task, inputs: { image: file ? `<${file.name}>` : url } },
      null, 2);
    const headers = { "Content-Type": "application/json" };
    const key = $("apiKey").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch("/v1", { method: "POST", headers, body: JSON.stringify([task]) });
    const body = await response.json().catch(() => null);
    const result = body && Array.isArray(body.data) ? body.data.find((d) => d.imageDataURI) : null;
    if (!response.ok || !result) {
      showError(describeErrors(body, response.status));
      $("status").textContent = "Failed.";
      return;
    }
    const type = showResult(result.imageDataURI, image);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $("status").textContent = `Done in ${seconds} s: ${type}. Drag the slider to compare.`;
  } catch (err) {
    showError(String(err && err.message ? err.message : err));
    $("status").textContent = "Failed.";
  } finally {
    $("run").disabled = false;
  }
}

function preview() {
  $("settingsPreview").textContent = JSON.stringify(buildSettings(), null, 2);
}

$("form").addEventListener("submit", run);
$("form").addEventListener("input", preview);
$("slider").addEventListener("input", () => {
  $("compare").style.setProperty("--pos", `${$("slider").value}%`);
});
$("file").addEventListener("change", () => {
  if ($("file").files[0]) $("url").value = "";
});
preview();
