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
  for (const id of ["returnOnlyMask", "postProcessMask", "preserveAlpha", "refineForeground", "crop", "shadow",
                    "highQuality"]) {
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

// One line per error, naming its parameter once (the message may already start with it).
function describeErrors(body, status) {
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  if (errors.length) {
    return errors.map((e) => {
      const text = e.message || e.code;
      return e.parameter && !text.startsWith(e.parameter) ? `${e.parameter}: ${text}` : text;
    }).join("\n");
  }
  return (body && (body.detail || body.message)) || `the gateway answered HTTP ${status}`;
}

const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };
const contentType = (dataURI) => dataURI.slice(5, dataURI.indexOf(";"));

function setSlider(percent) {
  $("compare").style.setProperty("--pos", `${percent}%`);
}

// The chosen input, shown at once, before anything is sent.
function showInput(src) {
  $("before").src = src;
  $("result").hidden = true;
  $("result").removeAttribute("src");
  $("slider").hidden = true;
  $("legend").hidden = true;
  $("download").hidden = true;
  $("compare").hidden = !src;
  setSlider(100);
}

function showResult(dataURI, before) {
  const type = contentType(dataURI);
  $("before").src = before;
  $("result").src = dataURI;
  $("result").hidden = false;
  $("slider").hidden = false;
  $("legend").hidden = false;
  $("compare").hidden = false;
  setSlider($("slider").value);
  const link = $("download");
  link.href = dataURI;
  link.download = `rmbg-result.${EXTENSIONS[type] || "bin"}`;
  link.hidden = false;
  return type;
}

// Crop and canvas options frame the result differently from the input, so the slider's "before"
// must be framed the same way. The server places the input's own pixels on the canvas before it
// composes (rmbg_backend/shape.py, then compose.py), so a transparent PNG with the same framing
// carries them in its colour channels: made opaque, it is the input as the result frames it.
// The mask options stay (they decide the subject box, hence the framing); what only colours the
// result goes. Alpha matting's edge colours stay too: a narrow band around the subject.
const FRAMING = ["crop", "outputSize", "scale", "position"];
const COLOURING = ["rgba", "shadow", "shadowOpacity", "shadowBlur", "shadowOffset", "refineForeground",
  "returnOnlyMask"];

function framingTask(task) {
  const settings = { ...task.settings };
  for (const key of COLOURING) delete settings[key];
  return { ...task, taskUUID: uuid4(), outputFormat: "PNG", settings };
}

// Every pixel the server placed (anything but the empty canvas around the input) made opaque;
// read with decodeRawPng (rawpng.js), since a canvas would have dropped the colour under alpha 0.
async function opaqueCopy(pngDataURI) {
  const binary = atob(pngDataURI.slice(pngDataURI.indexOf(",") + 1));
  const png = await decodeRawPng(Uint8Array.from(binary, (ch) => ch.charCodeAt(0)));
  const d = png.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] | d[i + 1] | d[i + 2] | d[i + 3]) d[i + 3] = 255;
  }
  const canvas = document.createElement("canvas");
  canvas.width = png.width;
  canvas.height = png.height;
  canvas.getContext("2d").putImageData(new ImageData(d, png.width, png.height), 0, 0);
  return canvas.toDataURL("image/png");
}

async function postTask(task) {
  const headers = { "Content-Type": "application/json" };
  const key = $("apiKey").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch("/v1", { method: "POST", headers, body: JSON.stringify([task]) });
  const body = await response.json().catch(() => null);
  const result = body && Array.isArray(body.data) ? body.data.find((d) => d.imageDataURI) : null;
  if (!response.ok || !result) throw new Error(describeErrors(body, response.status));
  return result.imageDataURI;
}

// The "before" of the slider: the input itself, or the input framed as the result is.
async function beforeFor(task, image, resultURI) {
  if (!FRAMING.some((key) => key in task.settings)) return image;
  const plain = contentType(resultURI) === "image/png" && !COLOURING.some((key) => key in task.settings);
  return opaqueCopy(plain ? resultURI : await postTask(framingTask(task)));
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
    const resultURI = await postTask(task);
    const type = showResult(resultURI, await beforeFor(task, image, resultURI));
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
$("slider").addEventListener("input", () => setSlider($("slider").value));
let inputURL = null;
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (inputURL) URL.revokeObjectURL(inputURL);
  inputURL = file ? URL.createObjectURL(file) : null;
  if (file) $("url").value = "";
  showInput(inputURL);
});
$("url").addEventListener("change", () => {
  if (!$("file").files[0]) showInput($("url").value.trim());
});
preview();
