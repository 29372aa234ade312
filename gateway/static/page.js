// The gateway's page: plain JS, no build step, nothing from elsewhere. It calls the same JSON API as any client.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("modelport-api-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("modelport-api-key", keyInput.value.trim());
  loadModels();
});

function headers(extra) {
  const key = keyInput.value.trim();
  return Object.assign(key ? { Authorization: "Bearer " + key } : {}, extra || {});
}

// Each panel shows only the answer to its latest request: a slow earlier one must not overwrite a later one.
const latest = { image: 0, text: 0 };

async function predict(panel, model, init) {
  const ticket = ++latest[panel];
  const out = $(panel + "-result");
  out.classList.add("busy");
  const started = performance.now();
  let response, body;
  try {
    response = await fetch("/v1/models/" + encodeURIComponent(model) + ":predict",
                           Object.assign({ method: "POST" }, init, { headers: headers(init.headers) }));
    body = await response.json();
  } catch (error) {
    if (ticket === latest[panel]) showError(out, { title: "No answer", detail: String(error) });
    return;
  }
  const ms = performance.now() - started;
  if (ticket !== latest[panel]) return;
  out.classList.remove("busy");
  if (!response.ok) {
    showError(out, body, response.headers.get("X-Request-ID"));
    return;
  }
  showPrediction(out, body.predictions[0], ms, response.headers.get("X-Request-ID"));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showPrediction(out, prediction, ms, requestId) {
  out.replaceChildren();
  const labelled = prediction.label !== undefined ? prediction
    : Object.values(prediction.outputs || {}).find((value) => value && value.label !== undefined);
  if (!labelled) {
    out.append(element("pre", "raw", JSON.stringify(prediction.outputs)));
  } else {
    const head = element("p", "answer");
    head.append(element("span", "label", labelled.label), element("span", "score",
      " " + (100 * labelled.score).toFixed(1) + " %"));
    out.append(head);
    const bars = element("ol", "bars");
    for (const [label, score] of Object.entries(labelled.scores)) {
      const row = element("li", label === labelled.label ? "bar top" : "bar");
      row.dataset.label = label;
      const fill = element("span", "fill");
      fill.style.width = Math.max(0.5, 100 * score).toFixed(1) + "%";
      row.append(element("span", "name", label), element("span", "track"), element("span", "value",
        (100 * score).toFixed(1) + " %"));
      row.children[1].append(fill);
      bars.append(row);
    }
    out.append(bars);
  }
  out.append(element("p", "rtt", "round trip " + ms.toFixed(1) + " ms" + (requestId ? " · " + requestId : "")));
}

function showError(out, problem, requestId) {
  out.classList.remove("busy");
  out.replaceChildren(element("p", "error", (problem.title || "Error") + ": " + (problem.detail || "")));
  if (problem.fix) out.append(element("p", "fix", "Fix: " + problem.fix));
  if (requestId) out.append(element("p", "rtt", requestId));
}

// ---- drawing ------------------------------------------------------------------------------------------------------
const canvas = $("canvas");
const ink = canvas.getContext("2d");

function clearCanvas() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, canvas.width, canvas.height);
  ink.lineWidth = 18;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.strokeStyle = "#000";
}
clearCanvas();

let drawing = false;
let pending = null;

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
          (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  clearTimeout(pending);
  const [x, y] = point(event);
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x, y);
  ink.stroke();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  clearTimeout(pending);
  pending = setTimeout(sendCanvas, 350);  // after the last stroke of a digit, not after each
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", () => {
  clearCanvas();
  $("image-result").replaceChildren();
});

function sendCanvas() {
  canvas.toBlob((blob) => sendImage(blob, "canvas.png"), "image/png");
}

function sendImage(blob, name) {
  const form = new FormData();
  form.append("inputs", blob, name);
  predict("image", $("image-model").value, { body: form });
}

function showFile(file) {
  if (!file) return;
  const image = new Image();
  image.onload = () => {
    clearCanvas();
    const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
    const w = image.width * scale, h = image.height * scale;
    ink.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(image.src);
  };
  image.src = URL.createObjectURL(file);
  sendImage(file, file.name);
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  showFile(event.dataTransfer.files[0]);
});
$("file").addEventListener("change", (event) => showFile(event.target.files[0]));

// ---- text ---------------------------------------------------------------------------------------------------------
function sendText() {
  const text = $("text").value;
  if (!text.trim()) return;
  predict("text", $("text-model").value, { headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify({ inputs: [text] }) });
}
$("classify-text").addEventListener("click", sendText);
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) sendText();
});

// ---- which models: those of one string input (text or file bytes) that this key may call -------------------------
async function loadModels() {
  const status = $("status");
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers() });
  } catch (error) {
    status.textContent = "gateway unreachable: " + error;
    return;
  }
  if (!response.ok) {
    const problem = await response.json();
    status.textContent = problem.title + (response.status === 401 ? ": enter an API key above" : "");
    return;
  }
  const { models } = await response.json();
  const usable = models.filter((m) => m.takes_files).map((m) => m.name);
  for (const id of ["image-model", "text-model"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...usable.map((name) => element("option", "", name)));
    if (usable.includes(chosen)) select.value = chosen;
  }
  status.textContent = models.length + " models: " + models.map((m) => m.name).join(", ");
}
loadModels();
