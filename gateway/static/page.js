// The gateway's page: plain JS, no build step, nothing from elsewhere. It calls the same JSON API as any client:
// GET /v1/forms (each model's inputs and the widget for each), POST :predict and :explain, GET /v1/status.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
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

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toFixed(digits === undefined ? 3 : digits);
}

async function call(path, init) {
  const response = await fetch(path, Object.assign({}, init, { headers: headers((init || {}).headers) }));
  const body = await response.json();
  return { ok: response.ok, status: response.status, body, requestId: response.headers.get("X-Request-ID") };
}

function showError(out, problem, requestId) {
  out.classList.remove("busy");
  out.replaceChildren(element("p", "error", (problem.title || "Error") + ": " + (problem.detail || "")));
  if (problem.fix) out.append(element("p", "fix", "Fix: " + problem.fix));
  if (requestId) out.append(element("p", "meta", requestId));
}

// ---- the models and their forms ---------------------------------------------------------------------------------
let models = {};
let current = null;  // { model, read(): the `inputs` object by input name, one item each; image(): pixels or null }

async function loadModels() {
  const status = $("status");
  let answer;
  try {
    answer = await call("/v1/forms");
  } catch (error) {
    status.textContent = "gateway unreachable: " + error;
    return;
  }
  if (!answer.ok) {
    status.textContent = answer.body.title + (answer.status === 401 ? ": enter an API key above" : "");
    return;
  }
  models = Object.fromEntries(answer.body.models.map((m) => [m.name, m]));
  const select = $("model");
  const chosen = select.value || location.hash.slice(1);
  select.replaceChildren(...Object.keys(models).map((name) => element("option", "", name)));
  if (models[chosen]) select.value = chosen;
  const count = answer.body.models.length;
  status.textContent = count + (count === 1 ? " model: " : " models: ") + Object.keys(models).join(", ");
  showForm(models[select.value]);
  pollStatus();
}

$("model").addEventListener("change", () => {
  location.hash = $("model").value;
  showForm(models[$("model").value]);
  drawStatus();
});

function showForm(model) {
  const form = $("form");
  form.replaceChildren();
  $("result").replaceChildren();
  $("explanation").replaceChildren(element("p", "hint", "The explanation appears here."));
  $("explain-label").replaceChildren();
  if (!model) return;
  $("description").textContent = model.description || "";
  const readers = {};
  let image = null;
  for (const input of model.inputs) {
    const box = element("fieldset", "input");
    box.dataset.input = input.name;
    const legend = element("legend", "", input.name + " ");
    legend.append(element("span", "dims", input.dtype.replace("TYPE_", "") + " [" + input.dims.join(", ") + "]"));
    box.append(legend);
    const widget = WIDGETS[input.widget] || WIDGETS.json;
    const made = widget(box, input);
    readers[input.name] = made.read;
    if (made.image) image = made.image;
    form.append(box);
  }
  current = { model, read: async () => {
    const inputs = {};
    for (const [name, read] of Object.entries(readers)) inputs[name] = [await read()];
    return inputs;
  }, image };
}

const WIDGETS = {
  // An encoded image the model decodes: draw (dark ink on white) or upload; sent as base64 bytes.
  "image-file": (box) => {
    const pad = drawingPad(box, { background: "#fff", ink: "#000" });
    return {
      // a chosen or dropped file goes as it is; a drawing as a PNG of the pad
      read: async () => ({ b64: await base64(pad.file || await new Promise((resolve) => pad.canvas.toBlob(resolve,
                                                                                                        "image/png"))) }),
      image: () => pad.grey(),
    };
  },
  // A numeric image: draw (bright ink on black) or upload, sent as pixel values 0..255 at the input's size.
  pixels: (box, input) => {
    const pad = drawingPad(box, { background: "#000", ink: "#fff" });
    const nchw = input.format === "FORMAT_NCHW";
    const [h, w, c] = nchw ? [input.dims[1], input.dims[2], input.dims[0]] : input.dims;
    const read = () => {
      const small = document.createElement("canvas");
      small.width = w;
      small.height = h;
      const context = small.getContext("2d");
      context.drawImage(pad.canvas, 0, 0, w, h);
      const rgba = context.getImageData(0, 0, w, h).data;
      const pixel = (y, x, k) => (c === 1 ? Math.round((rgba[4 * (y * w + x)] + rgba[4 * (y * w + x) + 1]
                                                        + rgba[4 * (y * w + x) + 2]) / 3) : rgba[4 * (y * w + x) + k]);
      const range = (n) => Array.from({ length: n }, (_, i) => i);
      if (nchw) return range(c).map((k) => range(h).map((y) => range(w).map((x) => pixel(y, x, k))));
      return range(h).map((y) => range(w).map((x) => range(c || 1).map((k) => pixel(y, x, k))));
    };
    const grey = () => {
      const pixels = read();
      return (nchw ? pixels[0] : pixels.map((row) => row.map((px) => px[0]))).map((row) => row.map((v) => v / 255));
    };
    return { read, image: grey };
  },
  text: (box, input) => {
    const area = element("textarea");
    area.rows = 4;
    area.value = input.example || "";
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
    });
    box.append(area);
    return { read: () => area.value };
  },
  // One field per value, and a CSV row that fills them all at once.
  numbers: (box, input) => {
    const count = input.dims.reduce((a, b) => a * b, 1);
    const example = input.example ? [input.example].flat(Infinity) : new Array(count).fill(0);
    const grid = element("div", "numbers");
    const fields = example.map((value, i) => {
      const label = element("label", "", input.name + "[" + i + "]");
      const field = element("input");
      field.type = "number";
      field.step = "any";
      field.value = String(value);
      field.name = input.name + "[" + i + "]";
      label.append(field);
      grid.append(label);
      return field;
    });
    const csv = element("label", "csv", "CSV row");
    const row = element("input");
    row.name = input.name + ".csv";
    row.placeholder = example.join(", ");
    row.addEventListener("change", () => {
      row.value.split(/[,;\s]+/).filter(Boolean).forEach((v, i) => { if (fields[i]) fields[i].value = v; });
    });
    csv.append(row);
    box.append(grid, csv);
    const integral = /INT/.test(input.dtype);
    const reshape = (flat, dims) => (dims.length <= 1 ? flat
      : Array.from({ length: dims[0] }, (_, i) => reshape(flat.slice(i * flat.length / dims[0],
                                                                      (i + 1) * flat.length / dims[0]), dims.slice(1))));
    return { read: () => reshape(fields.map((f) => (integral ? parseInt(f.value, 10) : Number(f.value))),
                                 input.dims) };
  },
  json: (box, input) => {
    const area = element("textarea", "json");
    area.rows = 5;
    const zeros = (dims) => (dims.length ? Array.from({ length: Math.max(dims[0], 1) }, () => zeros(dims.slice(1)))
      : 0);
    area.value = JSON.stringify(input.example !== undefined ? input.example : zeros(input.dims));
    box.append(area);
    return { read: () => JSON.parse(area.value) };
  },
};

async function base64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// A square canvas to draw on with the pointer, or to drop or choose an image file into; runs the model after a stroke.
function drawingPad(box, colours) {
  const drop = element("div", "drop");
  drop.title = "draw here, or drop an image file";
  const canvas = element("canvas", "draw");
  canvas.width = canvas.height = 280;
  canvas.setAttribute("aria-label", "drawing canvas");
  drop.append(canvas);
  const ink = canvas.getContext("2d", { willReadFrequently: true });
  const clear = () => {
    ink.fillStyle = colours.background;
    ink.fillRect(0, 0, canvas.width, canvas.height);
    Object.assign(ink, { lineWidth: 18, lineCap: "round", lineJoin: "round", strokeStyle: colours.ink });
  };
  clear();
  let drawing = false;
  let pending = null;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
  };
  const pad = { canvas, file: null };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.file = null;
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
  const end = () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(pending);
    pending = setTimeout(run, 350);  // after the last stroke of a digit, not after each
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  const show = (file) => {
    if (!file) return;
    const picture = new Image();
    picture.onload = () => {
      clear();
      const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
      const w = picture.width * scale, h = picture.height * scale;
      ink.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      URL.revokeObjectURL(picture.src);
      pad.file = file;
      run();
    };
    picture.src = URL.createObjectURL(file);
  };
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    show(event.dataTransfer.files[0]);
  });
  const buttons = element("div", "buttons");
  const wipe = element("button", "", "Clear");
  wipe.type = "button";
  wipe.addEventListener("click", () => { clear(); pad.file = null; $("result").replaceChildren(); });
  const choose = element("label", "file", "Choose image");
  const file = element("input");
  file.type = "file";
  file.accept = "image/png,image/jpeg";
  file.addEventListener("change", (event) => show(event.target.files[0]));
  choose.append(file);
  buttons.append(wipe, choose);
  box.append(drop, buttons);
  // The drawing as grey levels 0..1 at 28 x 28, under a heatmap when the server sends no decoded image.
  const grey = () => {
    const data = ink.getImageData(0, 0, canvas.width, canvas.height).data;
    const side = 28, step = canvas.width / side;
    return Array.from({ length: side }, (_, y) => Array.from({ length: side }, (_, x) => {
      const i = 4 * (Math.floor((y + 0.5) * step) * canvas.width + Math.floor((x + 0.5) * step));
      return (data[i] + data[i + 1] + data[i + 2]) / 765;
    }));
  };
  pad.grey = grey;
  return pad;
}

// ---- predicting and explaining ----------------------------------------------------------------------------------
let ticket = 0;  // only the latest run's answers are shown: a slow earlier one must not overwrite a later one

async function run() {
  if (!current) return;
  const mine = ++ticket;
  const { model } = current;
  const out = $("result");
  let inputs;
  try {
    inputs = await current.read();
  } catch (error) {
    showError(out, { title: "Cannot read the form", detail: String(error) });
    return;
  }
  out.classList.add("busy");
  const body = JSON.stringify({ inputs });
  const started = performance.now();
  let answer;
  try {
    answer = await call("/v1/models/" + encodeURIComponent(model.name) + ":predict",
                        { method: "POST", headers: { "Content-Type": "application/json" }, body });
  } catch (error) {
    if (mine === ticket) showError(out, { title: "No answer", detail: String(error) });
    return;
  }
  const ms = performance.now() - started;
  if (mine !== ticket) return;
  out.classList.remove("busy");
  if (!answer.ok) {
    showError(out, answer.body, answer.requestId);
    return;
  }
  showPrediction(out, model, answer.body.predictions[0], ms, answer.requestId);
  if ($("explain-on").checked) explain(model, inputs, mine);
}
$("run").addEventListener("click", run);

function showPrediction(out, model, prediction, ms, requestId) {
  out.replaceChildren();
  const outputs = prediction.label !== undefined ? { [model.outputs[0].name]: prediction } : prediction.outputs;
  for (const [name, value] of Object.entries(outputs)) {
    const block = element("div", "output");
    block.dataset.output = name;
    block.append(element("h3", "", name));
    if (value && value.label !== undefined) {
      const head = element("p", "answer");
      head.append(element("span", "label", value.label), element("span", "score", " " + (100 * value.score).toFixed(1)
                                                                  + " %"));
      block.append(head, scoreBars(value));
    } else {
      block.append(element("p", "values", [value].flat(Infinity).map((v) => fmt(v, 2)).join(", ")));
    }
    out.append(block);
  }
  out.append(element("p", "meta", "round trip " + ms.toFixed(1) + " ms" + (requestId ? " · " + requestId : "")));
}

function scoreBars(value) {
  const bars = element("ol", "bars");
  for (const [label, score] of Object.entries(value.scores)) {
    const row = element("li", label === value.label ? "bar top" : "bar");
    row.dataset.label = label;
    const track = element("span", "track");
    const fill = element("span", "fill");
    fill.style.width = Math.max(0.5, 100 * score).toFixed(1) + "%";
    track.append(fill);
    row.append(element("span", "name", label), track, element("span", "value", (100 * score).toFixed(1) + " %"));
    bars.append(row);
  }
  return bars;
}

let explained = null;

async function explain(model, inputs, mine) {
  const out = $("explanation");
  out.classList.add("busy");
  let answer;
  try {
    answer = await call("/v1/models/" + encodeURIComponent(model.name) + ":explain",
                        { method: "POST", headers: { "Content-Type": "application/json" },
                          body: JSON.stringify({ inputs }) });
  } catch (error) {
    if (mine === ticket) showError(out, { title: "No answer", detail: String(error) });
    return;
  }
  if (mine !== ticket) return;
  out.classList.remove("busy");
  if (!answer.ok) {
    showError(out, answer.body, answer.requestId);
    return;
  }
  explained = { found: answer.body, image: answer.body.image ? null : current.image && current.image() };
  const select = $("explain-label");
  select.replaceChildren(...explained.found.labels.map((label) => element("option", "", label)));
  select.value = explained.found.label;
  showExplanation();
}
$("explain-label").addEventListener("change", showExplanation);

function showExplanation() {
  if (!explained) return;
  const { found } = explained;
  const out = $("explanation");
  const index = Math.max(0, found.labels.indexOf($("explain-label").value));
  const values = found.attributions[index];
  out.replaceChildren();
  out.dataset.method = found.method;
  if (found.method === "occlusion") out.append(heatmap(values, found.image || explained.image));
  else if (found.method === "leave-one-out") out.append(words(found.features, values));
  else out.append(featureBars(found.features, values));
  const what = { occlusion: "how much hiding each patch lowers the score of ",
                 "leave-one-out": "how much leaving each word out lowers the score of ",
                 "kernel-shap": "Shapley values (Kernel SHAP): each feature's share of the score of " }[found.method];
  // only Shapley values add up to the change from the reference input; occlusion's patches overlap
  const total = found.method === "kernel-shap" ? " · they sum to " + fmt(found.prediction[index]
    - found.baseline[index]) + " = prediction − baseline" + (found.reference ? " (" + found.reference + ")" : "")
    : found.baseline ? " · score " + fmt(found.prediction[index]) + ", all hidden " + fmt(found.baseline[index]) : "";
  out.append(element("p", "meta", found.method + ": " + what + found.labels[index] + total + " · " + found.requests
                                  + " requests, " + found.items + " items" +
                                  (found.explained ? " · on the pixels " + found.explained + " gets" : "")));
}

// Red where hiding a patch lowers the class's score, blue where it raises it, over the image in grey.
function heatmap(values, image) {
  const box = element("div", "heat");
  const canvas = element("canvas", "heatmap");
  const h = values.length, w = values[0].length;
  const side = 224;
  canvas.width = canvas.height = side;
  const context = canvas.getContext("2d");
  if (image) {
    const grey = image.map((row) => row.map((v) => [v].flat(Infinity)[0]));
    const top = Math.max(...grey.flat(), 1e-9);
    const gh = grey.length, gw = grey[0].length;
    for (let y = 0; y < gh; y++) {
      for (let x = 0; x < gw; x++) {
        const level = Math.round(255 * grey[y][x] / top);
        context.fillStyle = "rgb(" + level + "," + level + "," + level + ")";
        context.fillRect(x * side / gw, y * side / gh, side / gw + 1, side / gh + 1);
      }
    }
  }
  const peak = Math.max(...values.flat().map(Math.abs), 1e-9);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = values[y][x] / peak;
      context.fillStyle = v >= 0 ? "rgba(240,60,40," + (0.75 * v).toFixed(3) + ")"
        : "rgba(50,100,240," + (-0.75 * v).toFixed(3) + ")";
      context.fillRect(x * side / w, y * side / h, side / w + 1, side / h + 1);
    }
  }
  box.append(canvas, element("p", "legend", "red: the patch supports the class; blue: it speaks against it; " +
                                            "peak " + fmt(peak)));
  return box;
}

function words(features, values) {
  const peak = Math.max(...values.map(Math.abs), 1e-9);
  const line = element("p", "words");
  features.forEach((word, i) => {
    const span = element("span", "word " + (values[i] >= 0 ? "pro" : "con"), word);
    span.dataset.value = String(values[i]);
    span.title = fmt(values[i]);
    span.style.setProperty("--weight", (0.8 * Math.abs(values[i]) / peak).toFixed(3));
    line.append(span, " ");
  });
  return line;
}

// The features with the largest attributions, each a bar from the middle: right (green) for, left (red) against.
function featureBars(features, values) {
  const order = values.map((v, i) => i).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a])).slice(0, 16);
  const peak = Math.max(...values.map(Math.abs), 1e-9);
  const list = element("ol", "features");
  for (const i of order) {
    const row = element("li", "feature " + (values[i] >= 0 ? "pro" : "con"));
    row.dataset.feature = features[i];
    row.dataset.value = String(values[i]);
    const axis = element("span", "axis");
    const push = element("span", "push");
    const width = 50 * Math.abs(values[i]) / peak;
    push.style.width = width.toFixed(2) + "%";
    push.style.left = (values[i] >= 0 ? 50 : 50 - width).toFixed(2) + "%";
    axis.append(push);
    row.append(element("span", "name", features[i]), axis, element("span", "value", fmt(values[i])));
    list.append(row);
  }
  return list;
}

// ---- the live status view ---------------------------------------------------------------------------------------
const HISTORY = 60;  // snapshots kept: two minutes at one every two seconds
const REFRESH_MS = 2000;
const MIN_SPAN = 15;
let snapshots = [];
let polling = null;

async function pollStatus() {
  clearTimeout(polling);
  if (!document.hidden) {
    try {
      const answer = await call("/v1/status");
      if (answer.ok) {
        snapshots = snapshots.concat([answer.body]).slice(-HISTORY - 1);
        drawStatus();
      }
    } catch (error) {
      $("service-note").textContent = "status unavailable: " + error;
    }
  }
  polling = setTimeout(pollStatus, REFRESH_MS);
}
document.addEventListener("visibilitychange", () => { if (!document.hidden) pollStatus(); });

// The q-quantile of the requests between two cumulative histograms, interpolated within its bucket (as Prometheus'
// histogram_quantile does); null without requests.
function quantile(q, bounds, before, after) {
  const counts = after.map((c, i) => c - (before ? before[i] : 0));
  const total = counts[counts.length - 1];
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] >= rank) {
      const upper = bounds[i] === null ? bounds[i - 1] : bounds[i];
      const lower = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : counts[i - 1];
      const inside = counts[i] - below;
      return bounds[i] === null ? lower : lower + (upper - lower) * (inside > 0 ? (rank - below) / inside : 1);
    }
  }
  return null;
}

function series() {
  const found = {};
  for (let k = 1; k < snapshots.length; k++) {
    const before = snapshots[k - 1], after = snapshots[k];
    const seconds = Math.max(after.time - before.time, 1e-3);
    const earlier = Object.fromEntries(before.models.map((m) => [m.name, m]));
    for (const m of after.models) {
      const was = earlier[m.name] || { requests: 0, errors: 0, buckets: null };
      const s = found[m.name] || (found[m.name] = { rps: [], p50: [], p99: [], errors: [], drift: [], total: 0 });
      s.rps.push((m.requests - was.requests) / seconds);
      s.errors.push((m.errors - was.errors) / seconds);
      const p50 = quantile(0.5, after.buckets, was.buckets, m.buckets);
      const p99 = quantile(0.99, after.buckets, was.buckets, m.buckets);
      s.p50.push(p50 === null ? null : 1000 * p50);  // null: no requests in the interval, no latency to plot
      s.p99.push(p99 === null ? null : 1000 * p99);
      const drifts = Object.values(m.drift).filter((v) => v !== null);
      s.drift.push(drifts.length ? Math.max(...drifts) : null);
      s.total = m.requests;
    }
  }
  return found;
}

function chart(title, lines, unit, digits) {
  const box = element("div", "chart");
  // the latest value; for latencies the latest interval that had requests
  const latest = (values) => { for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
                               return null; };
  const last = latest(lines[0].values);
  const head = element("div", "", title + " ");
  const others = lines.slice(1).map((l) => "/" + fmt(latest(l.values), digits));
  head.append(element("span", "now", fmt(last, digits) + others.join("") + (last === null ? "" : unit)));
  const svg = document.createElementNS(SVG, "svg");
  // the time axis: the last HISTORY refreshes, or fewer while the page is young, newest on the right
  const span = Math.max(MIN_SPAN, ...lines.map((l) => l.values.length));
  svg.setAttribute("viewBox", "0 0 " + (span - 1) + " 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(...lines.flatMap((l) => l.values.filter((v) => v !== null)), 1e-9);
  for (const { values, className } of lines) {
    const line = document.createElementNS(SVG, "polyline");
    const offset = span - values.length;
    line.setAttribute("points", values.map((v, i) => (v === null ? null : (offset + i) + "," +
                                                      (38 - 36 * v / top).toFixed(2))).filter(Boolean).join(" "));
    if (className) line.setAttribute("class", className);
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  }
  box.append(head, svg);
  return box;
}

function drawStatus() {
  const all = series();
  const names = Object.keys(all).sort((a, b) => (all[b].total > 0) - (all[a].total > 0) || a.localeCompare(b));
  const plots = $("plots");
  plots.replaceChildren();
  for (const name of names.filter((n) => all[n].total > 0 || n === (current && current.model.name))) {
    const s = all[name];
    const card = element("div", "model-status");
    card.dataset.model = name;
    card.append(element("h3", "", name + " · " + s.total + (s.total === 1 ? " request" : " requests")));
    const charts = element("div", "charts");
    charts.append(chart("req/s", [{ values: s.rps }], "", 1),
                  chart("p50/p99", [{ values: s.p50 }, { values: s.p99, className: "p99" }], " ms", 1),
                  chart("errors/s", [{ values: s.errors, className: "errors" }], "", 2),
                  chart("drift (PSI)", [{ values: s.drift }], "", 3));
    card.append(charts);
    plots.append(card);
  }
  if (!plots.children.length) plots.append(element("p", "hint", "No requests yet: the plots start with the first."));
}

loadModels();
