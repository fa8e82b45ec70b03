/* The playground: served models in a browser, through TensorFlow Serving's REST API only.
 *
 * GET /v1/models/NAME (versions and states), GET /v1/models/NAME/metadata (signatures) and
 * POST /v1/models/NAME:predict with {"signature_name", "inputs"} (the columnar form): the
 * same calls a web front end makes to tensorflow_model_server, so the page works against it
 * as against `python -m serving serve`. What a model can do here is read from its
 * signatures: `sample(seed)` gives the sample grid, `decode(z)` with a 2-D z the latent map,
 * `encode` + `decode` the interpolation, `complete(images, known_rows, seed)` the
 * completion panel, and any signature taking a 4- or 6-number `observation` and giving an
 * `action` plays CartPole-v1 or Acrobot-v1 (envs.js).
 *
 * Images are drawn one canvas pixel per image pixel, each value v turned into a byte as
 * numpy's float32 arithmetic does in `serving query` (clip(v * 255 + 0.5, 0, 255) as uint8),
 * so a canvas holds the very bytes of the gRPC client's PNG. `window.playground` holds the
 * state the tests read.
 */
"use strict";

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------- the REST API

/** An error to show as it is: the server's own message, or why the server could not be reached. */
class ServerError extends Error {}

const api = {
  base: "",

  async request(method, path, body) {
    const url = this.base + path;
    let reply;
    try {
      reply = await fetch(url, body === undefined ? {method} :
        {method, headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    } catch (error) {
      throw new ServerError(`Cannot reach the server at ${this.base || location.origin} (${method} ${path}): ` +
        `${error.message}. Is it running, and, from another origin, started with --rest_api_enable_cors_support?`);
    }
    const text = await reply.text();
    let json = null;
    try {
      // TensorFlow Serving writes non-finite floats as bare NaN / Infinity, which JSON.parse refuses
      json = JSON.parse(text.replace(/(?<=[\[,:\s])(-?Infinity|NaN)(?=[\],}\s])/g, "null"));
    } catch (error) {
      if (reply.ok) throw new ServerError(`${method} ${url} answered with something not JSON: ${text.slice(0, 200)}`);
    }
    if (!reply.ok) {
      throw new ServerError(json && typeof json.error === "string" ? json.error :
        `HTTP ${reply.status} from ${method} ${url}: ${text.slice(0, 300)}`);
    }
    return json;
  },

  modelPath(model) {
    return `/v1/models/${encodeURIComponent(model)}`;
  },

  status(model) {
    return this.request("GET", this.modelPath(model));
  },

  metadata(model) {
    return this.request("GET", `${this.modelPath(model)}/metadata`);
  },

  /** Outputs by alias. A signature with one output gets its value without the alias (TF Serving's reply). */
  async predict(model, signature, inputs) {
    const reply = await this.request("POST", `${this.modelPath(model)}:predict`, {signature_name: signature, inputs});
    const aliases = Object.keys(models[model].signatures[signature].outputs);
    return aliases.length === 1 ? {[aliases[0]]: reply.outputs} : reply.outputs;
  },
};

// ---------------------------------------------------------------- models and what they can do

/** name -> {name, versions: [{version, state, error}], signatures: {name: {inputs, outputs}}, error} */
const models = {};

/** {dtype: "float", shape: [-1, 28, 28, 1] or null} from a TensorInfo's JSON (DT_FLOAT -> float, as TF names it). */
function tensorInfo(info) {
  const shape = info.tensor_shape;
  const dims = shape && !shape.unknown_rank ? (shape.dim || []).map((d) => Number(d.size || 0)) : null;
  return {dtype: String(info.dtype).replace(/^DT_/, "").toLowerCase(), shape: dims};
}

function parseSignatures(metadata) {
  const defs = metadata.metadata.signature_def.signature_def;
  const signatures = {};
  for (const [name, def] of Object.entries(defs)) {
    if (name.startsWith("__")) continue;
    const map = (infos) => Object.fromEntries(Object.entries(infos || {}).map(([a, info]) => [a, tensorInfo(info)]));
    signatures[name] = {inputs: map(def.inputs), outputs: map(def.outputs)};
  }
  return signatures;
}

const byKey = ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0);

/** A signature as `python -m serving query metadata` prints it: name(alias: dtype[dims], ...) -> outputs. */
function describe(name, signature) {
  const part = (infos) => Object.entries(infos).sort(byKey).map(([alias, info]) =>
    `${alias}: ${info.dtype}[${info.shape ? info.shape.map((d) => (d < 0 ? "?" : d)).join(",") : "…"}]`).join(", ");
  return `${name}(${part(signature.inputs)}) -> ${part(signature.outputs)}`;
}

/** Names of the models (in order) with a signature for which `test(signature, name)` holds. */
function modelsWith(test) {
  const fits = (model) => model.signatures && Object.entries(model.signatures).some(([n, s]) => test(s, n));
  return Object.values(models).filter(fits).map((model) => model.name);
}

const isSampler = (s, n) => n === "sample" && "seed" in s.inputs && "images" in s.outputs;
const isDecoder2d = (s, n) => n === "decode" && s.inputs.z && s.inputs.z.shape && s.inputs.z.shape[1] === 2;
const isCompleter = (s, n) => n === "complete" && ["images", "known_rows", "seed"].every((a) => a in s.inputs);
function isPolicy(s) {
  const shape = s.inputs.observation && s.inputs.observation.shape;
  return Boolean(shape && shape.length === 2 && shape[1] in Envs.BY_OBSERVATION_SIZE && "action" in s.outputs);
}
function imageShape(model, signature) {  // [H, W, C] of the signature's `images` input
  return models[model].signatures[signature].inputs.images.shape.slice(1);
}
const wantsLabel = (model, signature) => "label" in models[model].signatures[signature].inputs;

// ---------------------------------------------------------------- pictures

/** A value in [0, 1] as the byte numpy's float32 arithmetic gives: uint8(clip(v * 255 + 0.5, 0, 255)). */
function toByte(value) {
  const scaled = Math.fround(Math.fround(Math.fround(value) * 255) + 0.5);
  return Math.trunc(Math.min(Math.max(scaled, 0), 255));
}

/** Draw one image ([H][W][C] nested arrays, values in [0, 1]) on `canvas`, one canvas pixel per image pixel. */
function drawImage(canvas, image) {
  const height = image.length, width = image[0].length;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const value = image[y][x], at = 4 * (y * width + x);
      const rgb = value.length === 3 ? value.map(toByte) : [toByte(value[0]), toByte(value[0]), toByte(value[0])];
      pixels.data.set([...rgb, 255], at);
    }
  }
  context.putImageData(pixels, 0, 0);
  return canvas;
}

function imageCanvas(image, attributes = {}) {
  const canvas = drawImage(document.createElement("canvas"), image);
  for (const [key, value] of Object.entries(attributes)) canvas.dataset[key] = value;
  return canvas;
}

function range(start, count) {
  return Array.from({length: count}, (_, i) => start + i);
}

function intInput(selector, low, high) {
  const element = $(selector), value = Number(element.value);
  const name = element.closest("label").textContent.trim();
  if (!Number.isInteger(value) || value < low || (high !== undefined && value > high)) {
    const bounds = `[${low}, ${high === undefined ? "∞" : high}]`;
    throw new ServerError(`${name} must be a whole number in ${bounds}, got ${element.value}`);
  }
  return value;
}

function floatInput(selector) {
  const element = $(selector), value = Number(element.value);
  if (!Number.isFinite(value) || element.value === "") {
    throw new ServerError(`${element.closest("label").textContent.trim()} must be a number, got ${element.value}`);
  }
  return value;
}

/** Inputs plus `label` when the signature is conditional. */
function withLabel(model, signature, inputs, labelSelector, count) {
  if (wantsLabel(model, signature)) inputs.label = Array(count).fill(intInput(labelSelector, 0));
  return inputs;
}

// ---------------------------------------------------------------- errors and busy buttons

function showError(error) {
  const box = $("#error");
  box.textContent = error instanceof ServerError ? error.message : `${error.name}: ${error.message}`;
  box.hidden = false;
  if (!(error instanceof ServerError)) console.error(error);
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

/** Run an action of the page: errors go to the banner, the button is disabled meanwhile. */
async function act(button, work) {
  if (button) button.disabled = true;
  try {
    const result = await work();
    clearError();
    return result;
  } catch (error) {
    showError(error);
  } finally {
    if (button) button.disabled = false;
  }
}

function fillSelect(select, names, placeholder) {
  const previous = select.value;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  if (!names.length) select.append(new Option(placeholder, ""));
  if (names.includes(previous)) select.value = previous;
  select.dispatchEvent(new Event("change"));
}

// ---------------------------------------------------------------- connecting and the model table

async function connect() {
  api.base = $("#base").value.trim().replace(/\/+$/, "");
  const names = $("#models").value.split(/[\s,]+/).filter(Boolean);
  const query = new URLSearchParams({base: api.base, models: names.join(",")});
  history.replaceState(null, "", `${location.pathname}?${query}`);
  for (const name of Object.keys(models)) delete models[name];
  const failures = [];
  await Promise.all(names.map(async (name) => {
    const model = models[name] = {name, versions: [], signatures: null, error: null};
    try {
      const [status, metadata] = await Promise.all([api.status(name), api.metadata(name)]);
      model.versions = status.model_version_status.map((v) => ({version: v.version, state: v.state,
        error: v.status && v.status.error_code !== "OK" ? `${v.status.error_code}: ${v.status.error_message}` : ""}));
      model.signatures = parseSignatures(metadata);
    } catch (error) {
      model.error = error.message;
      failures.push(error instanceof ServerError ? error : new ServerError(`${name}: ${error.message}`));
    }
  }));
  drawModelTable(names);
  fillSelect($("#sample-model"), modelsWith(isSampler), "(no sample signature)");
  fillSelect($("#latent-model"), modelsWith(isDecoder2d), "(no decode with a 2-D z)");
  fillSelect($("#interpolate-model"), modelsWith((s, n) => isSampler(s, n)).filter(
    (m) => models[m].signatures.encode && models[m].signatures.decode), "(no sample, encode and decode)");
  fillSelect($("#complete-model"), modelsWith(isCompleter), "(no complete signature)");
  fillSelect($("#policy-model"), modelsWith(isPolicy), "(no policy for CartPole or Acrobot)");
  $("#latent-none").hidden = modelsWith(isDecoder2d).length > 0;
  $("#policy-none").hidden = modelsWith(isPolicy).length > 0;
  await Promise.all([  // something to look at straight away
    $("#sample-model").value ? sampleGrid() : null, $("#latent-model").value ? drawLatentMap() : null]);
  if (failures.length) throw failures[0];
}

function drawModelTable(names) {
  const body = $("#model-table tbody");
  body.replaceChildren();
  for (const name of names) {
    const model = models[name], row = body.insertRow();
    row.dataset.model = name;
    row.insertCell().textContent = name;
    const versions = row.insertCell();
    versions.textContent = model.versions.map((v) => `${v.version}: ${v.state}${v.error ? ` (${v.error})` : ""}`)
      .join("\n");
    const signatures = row.insertCell();
    if (model.error) {
      signatures.textContent = model.error;
      signatures.className = "failed";
    } else {
      signatures.className = "signatures";
      for (const [signature, info] of Object.entries(model.signatures).sort(byKey)) {
        signatures.append(Object.assign(document.createElement("div"), {textContent: describe(signature, info)}));
      }
    }
  }
  $("#model-table").hidden = names.length === 0;
  $("#models-empty").hidden = names.length > 0;
}

// ---------------------------------------------------------------- images: samples

async function sampleGrid() {
  const model = $("#sample-model").value;
  if (!model) throw new ServerError("No model with a sample(seed) signature: name one and Connect.");
  const seeds = range(intInput("#sample-seed", 0), intInput("#sample-count", 1, 64));
  const inputs = withLabel(model, "sample", {seed: seeds}, "#sample-label", seeds.length);
  const {images} = await api.predict(model, "sample", inputs);
  $("#sample-grid").replaceChildren(...images.map((image, i) => imageCanvas(image, {seed: seeds[i]})));
  playground.samples = {model, seeds, images};
}

// ---------------------------------------------------------------- images: the latent map

const latent = {model: "", range: 3, busy: false, pending: null};

async function drawLatentMap() {
  const model = $("#latent-model").value;
  if (!model) throw new ServerError("No model with a decode(z) signature whose z has 2 numbers.");
  const extent = floatInput("#latent-range"), cells = 12;
  if (!(extent > 0)) throw new ServerError(`range must be positive, got ${extent}`);
  const z = [];
  for (let row = 0; row < cells; row++) {  // cell centres, z2 upwards
    for (let column = 0; column < cells; column++) {
      z.push([-extent + (column + 0.5) * 2 * extent / cells, extent - (row + 0.5) * 2 * extent / cells]);
    }
  }
  const {images} = await api.predict(model, "decode", withLabel(model, "decode", {z}, "#latent-label", z.length));
  const [height, width] = [images[0].length, images[0][0].length];
  const map = $("#latent-map");
  map.width = cells * width;
  map.height = cells * height;
  const context = map.getContext("2d"), tile = document.createElement("canvas");
  images.forEach((image, i) => {
    drawImage(tile, image);
    context.drawImage(tile, (i % cells) * width, Math.floor(i / cells) * height);
  });
  Object.assign(latent, {model, range: extent});
}

/** z at a point of the map given in canvas pixels (z1 rightwards, z2 upwards, ±range at the edges). */
function latentAt(x, y) {
  const map = $("#latent-map");
  return [-latent.range + 2 * latent.range * x / map.width, latent.range - 2 * latent.range * y / map.height];
}

async function decodeAt(event) {
  const map = $("#latent-map");
  if (!latent.model) return;
  // whole canvas pixels: one z per pixel of the map, the same wherever the page sits on the screen
  const x = Math.round(event.offsetX * map.width / map.clientWidth);
  const y = Math.round(event.offsetY * map.height / map.clientHeight);
  const marker = $("#latent-marker");
  Object.assign(marker.style, {left: `${x * map.clientWidth / map.width}px`,
                               top: `${y * map.clientHeight / map.height}px`});
  marker.hidden = false;
  latent.pending = latentAt(x, y);
  if (latent.busy) return;  // one request at a time; the newest position goes next
  latent.busy = true;
  try {
    while (latent.pending) {
      const z = latent.pending;
      latent.pending = null;
      const {images} = await api.predict(latent.model, "decode",
        withLabel(latent.model, "decode", {z: [z]}, "#latent-label", 1));
      drawImage($("#latent-image"), images[0]);
      const shown = $("#latent-z");
      shown.textContent = `z = (${z[0].toFixed(3)}, ${z[1].toFixed(3)})`;
      shown.dataset.z = JSON.stringify(z);
    }
    clearError();
  } catch (error) {
    latent.pending = null;
    showError(error);
  } finally {
    latent.busy = false;
  }
}

// ---------------------------------------------------------------- images: interpolation

async function interpolate() {
  const model = $("#interpolate-model").value;
  if (!model) throw new ServerError("No model with sample, encode and decode signatures.");
  const seeds = [intInput("#interpolate-a", 0), intInput("#interpolate-b", 0)];
  const steps = intInput("#interpolate-steps", 2, 32);
  const label = (signature, inputs, n) => withLabel(model, signature, inputs, "#sample-label", n);
  const {images: ends} = await api.predict(model, "sample", label("sample", {seed: seeds}, 2));
  const {mean} = await api.predict(model, "encode", label("encode", {images: ends}, 2));
  const z = range(0, steps).map((i) => {
    const t = i / (steps - 1);
    return mean[0].map((a, d) => (1 - t) * a + t * mean[1][d]);
  });
  const {images} = await api.predict(model, "decode", label("decode", {z}, steps));
  $("#interpolation").replaceChildren(imageCanvas(ends[0], {seed: seeds[0]}),
    ...images.map((image, i) => imageCanvas(image, {z: JSON.stringify(z[i])})),
    imageCanvas(ends[1], {seed: seeds[1]}));
  playground.interpolation = {model, seeds, mean, z};
}

// ---------------------------------------------------------------- completion

const drawing = {height: 28, width: 28, channels: 1, values: new Float32Array(28 * 28), digits: null, pen: false};

function drawingImage() {  // [H][W][C]
  const {height, width, channels, values} = drawing;
  return range(0, height).map((y) => range(0, width).map((x) =>
    Array.from(values.subarray((y * width + x) * channels, (y * width + x + 1) * channels))));
}

function knownRows() {
  return intInput("#complete-rows", 0, drawing.height);
}

function showKnownLine(frame, rows) {
  const line = frame.querySelector(".known-line");
  line.style.top = `${100 * rows / drawing.height}%`;
}

function redrawDrawing() {
  drawImage($("#drawing"), drawingImage());
  try {
    showKnownLine($("#drawing").parentElement, knownRows());
  } catch (error) { /* shown when completing */ }
}

/** Resize the drawing to the model's images and start from the chosen digit (or a blank). */
function resetDrawing() {
  const model = $("#complete-model").value;
  if (model) [drawing.height, drawing.width, drawing.channels] = imageShape(model, "complete");
  drawing.values = new Float32Array(drawing.height * drawing.width * drawing.channels);
  $("#complete-rows").max = drawing.height;
  const choice = $("#complete-digit").value;
  if (choice !== "" && drawing.digits) loadDigit(drawing.digits.images[Number(choice)]);
  redrawDrawing();
}

/** A held-out digit (28x28 bytes, base64) resized to the drawing by area averaging, binarized if asked. */
function loadDigit(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const size = Math.round(Math.sqrt(bytes.length));
  const {height, width, channels} = drawing, binarize = $("#complete-binarize").checked;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sum = 0, count = 0;
      const [y0, x0] = [Math.floor(y * size / height), Math.floor(x * size / width)];  // the source pixels
      const y1 = Math.max(Math.floor((y + 1) * size / height), y0 + 1);
      const x1 = Math.max(Math.floor((x + 1) * size / width), x0 + 1);
      for (let v = y0; v < y1; v++) {
        for (let u = x0; u < x1; u++) {
          sum += bytes[v * size + u];
          count++;
        }
      }
      const value = sum / count / 255;
      setPixel(y, x, binarize ? (value >= 0.5 ? 1 : 0) : value);
    }
  }
}

function setPixel(y, x, value) {
  const at = (y * drawing.width + x) * drawing.channels;
  drawing.values.fill(value, at, at + drawing.channels);
}

function paint(event) {
  if (!drawing.pen) return;
  const canvas = $("#drawing");
  const x = Math.floor(event.offsetX * drawing.width / canvas.clientWidth);
  const y = Math.floor(event.offsetY * drawing.height / canvas.clientHeight);
  const value = event.shiftKey || (event.buttons & 2) ? 0 : 1;
  for (const [dy, dx] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {  // a 2x2 pen: strokes about as wide as a digit's
    const [py, px] = [y + dy, x + dx];
    if (py < drawing.height && px < drawing.width && py >= 0 && px >= 0) setPixel(py, px, value);
  }
  redrawDrawing();
}

async function complete() {
  const model = $("#complete-model").value;
  if (!model) throw new ServerError("No model with a complete(images, known_rows, seed) signature.");
  const rows = knownRows(), count = intInput("#complete-count", 1, 16);
  const seeds = range(intInput("#complete-seed", 0), count), image = drawingImage();
  const inputs = withLabel(model, "complete",
    {images: Array(count).fill(image), known_rows: Array(count).fill(rows), seed: seeds}, "#complete-label", count);
  const {images} = await api.predict(model, "complete", inputs);
  $("#completions").replaceChildren(...images.map((completion, i) => {
    const frame = document.createElement("div");
    frame.className = "known-frame";
    const line = Object.assign(document.createElement("div"), {className: "known-line"});
    frame.append(imageCanvas(completion, {seed: seeds[i]}), line);
    showKnownLine(frame, rows);
    return frame;
  }));
  showKnownLine($("#drawing").parentElement, rows);
  playground.completion = {model, rows, seeds, image, images};
}

async function loadDigits() {
  try {
    const reply = await fetch("digits.json");
    drawing.digits = await reply.json();
    const select = $("#complete-digit");
    select.replaceChildren(new Option("a blank canvas", ""),
      ...drawing.digits.labels.map((label, i) => new Option(`held-out digit ${i + 1} (a ${label})`, String(i))));
    select.value = "0";
  } catch (error) {  // the page still works, with a blank canvas to draw on
    $("#complete-digit").replaceChildren(new Option("a blank canvas", ""));
  }
  resetDrawing();
}

// ---------------------------------------------------------------- policies

const episode = {running: false, stop: false};

function actingSignatures(model) {
  const names = Object.entries(models[model].signatures).filter(([, s]) => isPolicy(s)).map(([n]) => n);
  const order = ["greedy", "serving_default"];  // the mode first, as `query play --signature greedy` plays
  return names.sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9) || a.localeCompare(b));
}

function choosePolicy() {
  const model = $("#policy-model").value;
  fillSelectQuiet($("#policy-signature"), model ? actingSignatures(model) : []);
  if (!model) return;
  const size = models[model].signatures[actingSignatures(model)[0]].inputs.observation.shape[1];
  const env = new Envs.BY_OBSERVATION_SIZE[size]();
  $("#policy-env").textContent = `${env.id} (observations of ${size} numbers)`;
  drawEnvironment(env);
}

function fillSelectQuiet(select, names) {
  select.replaceChildren(...names.map((name) => new Option(name, name)));
}

/** One step's requests: the action, and what the model can say about the choice (bars). */
async function queryPolicy(model, signature, observation, seed) {
  const inputs = {observation: [observation]};
  if ("seed" in models[model].signatures[signature].inputs) inputs.seed = [seed];
  const signatures = models[model].signatures, extra = [];
  const ask = (name) => api.predict(model, name, {observation: [observation]}).then((o) => ({[name]: o[name][0]}));
  if (!("q_values" in signatures[signature].outputs)) {  // else the acting signature gives them
    if (signatures.probabilities) extra.push(ask("probabilities"));
    else if (signatures.q_values) extra.push(ask("q_values"));
  }
  if (signatures.value) extra.push(ask("value"));
  const [outputs, ...more] = await Promise.all([api.predict(model, signature, inputs), ...extra]);
  const about = Object.assign({}, ...more);
  if (outputs.q_values) about.q_values = outputs.q_values[0];
  return {action: outputs.action[0], ...about};
}

async function play() {
  if (episode.running) return;
  const model = $("#policy-model").value;
  if (!model) throw new ServerError("No model acts on CartPole-v1 or Acrobot-v1 observations.");
  const signature = $("#policy-signature").value, seed = intInput("#policy-seed", 0);
  const size = models[model].signatures[signature].inputs.observation.shape[1];
  const env = new Envs.BY_OBSERVATION_SIZE[size]();
  let observation = env.reset(seed);
  const record = {model, signature, seed, env: env.id, observations: [observation], actions: [], return: 0,
                  steps: 0, terminated: false, truncated: false, done: false};
  playground.episode = record;
  Object.assign(episode, {running: true, stop: false});
  $("#policy-play").disabled = true;
  try {
    drawEnvironment(env);
    while (!episode.stop) {
      // the action seeds of `python -m serving query play`: seed * 100003 + step
      const choice = await queryPolicy(model, signature, observation, seed * 100003 + record.steps);
      const action = Number(choice.action);
      if (!(action in env.actions)) {
        throw new ServerError(`${model} ${signature} answered action ${choice.action}; ` +
          `${env.id} takes 0 to ${env.actions.length - 1}`);
      }
      const step = env.step(action);
      observation = step.observation;
      record.actions.push(action);
      record.observations.push(observation);
      record.return += step.reward;
      record.steps += 1;
      Object.assign(record, {terminated: step.terminated, truncated: step.truncated});
      drawEnvironment(env);
      drawBars(env, choice);
      showEpisode(record);
      if (step.terminated || step.truncated) break;
      if ($("#policy-realtime").checked) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    record.done = record.terminated || record.truncated;
    showEpisode(record);
  } finally {
    episode.running = false;
    $("#policy-play").disabled = false;
  }
}

function showEpisode(record) {
  const end = record.terminated ? "terminated" : record.truncated ? "truncated at the time limit" :
    episode.stop ? "stopped" : "playing";
  const shown = $("#episode");
  shown.textContent = `return ${record.return} after ${record.steps} steps (${end})`;
  shown.dataset.return = String(record.return);
  shown.dataset.steps = String(record.steps);
}

/** Bars of what the model says about each action (probabilities or Q-values), the chosen one coloured. */
function drawBars(env, choice) {
  const chosen = Number(choice.action), values = choice.probabilities || choice.q_values;
  const kind = choice.probabilities ? "action probabilities" : choice.q_values ? "Q-values" : "the action";
  // bars span [low, high]: [0, 1] for probabilities, the values and 0 for Q-values
  const low = values && !choice.probabilities ? Math.min(0, ...values) : 0;
  const high = values && !choice.probabilities ? Math.max(0, ...values) : 1, span = high - low || 1;
  const bars = env.actions.map((name, i) => {
    const value = values ? values[i] : Number(i === chosen);
    const bar = document.createElement("div");
    bar.className = `bar${i === chosen ? " chosen" : ""}`;
    bar.innerHTML = `<span></span><div class="track"><div class="fill"></div></div><span class="value"></span>`;
    bar.children[0].textContent = name;
    Object.assign(bar.querySelector(".fill").style, {left: `${100 * (Math.min(value, 0) - low) / span}%`,
                                                     width: `${100 * Math.abs(value) / span}%`});
    bar.children[2].textContent = values ? Number(value).toFixed(3) : "";
    return bar;
  });
  const note = (text) => Object.assign(document.createElement("p"), {className: "note", textContent: text});
  const value = choice.value === undefined ? [] : [note(`value of the state: ${Number(choice.value).toFixed(3)}`)];
  $("#bars").replaceChildren(note(kind), ...bars, ...value);
}

function drawEnvironment(env) {
  const canvas = $("#env-canvas"), context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!env.state) env.setState([0, 0, 0, 0]);
  if (env instanceof Envs.CartPole) drawCartPole(context, canvas, env.state);
  else drawAcrobot(context, canvas, env.state);
}

/** gymnasium's picture of CartPole: 4.8 m of track across the canvas, a 1 m pole. */
function drawCartPole(context, canvas, [x, , theta]) {
  const scale = canvas.width / 4.8, ground = canvas.height * 0.75;
  const cartX = canvas.width / 2 + x * scale, cartW = 50, cartH = 30;
  context.strokeStyle = "#000";
  context.beginPath();
  context.moveTo(0, ground);
  context.lineTo(canvas.width, ground);
  context.stroke();
  context.fillStyle = "#000";
  context.fillRect(cartX - cartW / 2, ground - cartH / 2, cartW, cartH);
  context.save();
  context.translate(cartX, ground - cartH / 4);
  context.rotate(theta);
  context.fillStyle = "rgb(202, 152, 101)";
  context.fillRect(-5, -scale * 1.0, 10, scale * 1.0);
  context.restore();
  context.fillStyle = "rgb(129, 132, 203)";
  context.beginPath();
  context.arc(cartX, ground - cartH / 4, 5, 0, 2 * Math.PI);
  context.fill();
}

/** gymnasium's picture of Acrobot: two 1 m links hanging from the centre, the goal line 1 m above it. */
function drawAcrobot(context, canvas, [theta1, theta2]) {
  const scale = Math.min(canvas.width, canvas.height) / 4.4;
  const point = (x, y) => [canvas.width / 2 + x * scale, canvas.height / 2 - y * scale];
  const p1 = [Math.sin(theta1), -Math.cos(theta1)];
  const p2 = [p1[0] + Math.sin(theta1 + theta2), p1[1] - Math.cos(theta1 + theta2)];
  context.strokeStyle = "#000";
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(...point(-2.2, 1));
  context.lineTo(...point(2.2, 1));
  context.stroke();
  context.lineCap = "round";
  context.lineWidth = 0.2 * scale;
  context.strokeStyle = "rgb(0, 204, 204)";
  for (const [from, to] of [[[0, 0], p1], [p1, p2]]) {
    context.beginPath();
    context.moveTo(...point(...from));
    context.lineTo(...point(...to));
    context.stroke();
  }
  context.fillStyle = "rgb(204, 204, 0)";
  for (const joint of [[0, 0], p1]) {
    context.beginPath();
    context.arc(...point(...joint), 0.1 * scale, 0, 2 * Math.PI);
    context.fill();
  }
  context.lineWidth = 1;
}

// ---------------------------------------------------------------- start-up

const playground = {api, models, connect, latent, Envs: window.Envs};
window.playground = playground;

function showPanel(id) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.panel === id);
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== id;
}

/** Show the label box beside a model select when that model's signature is conditional. */
function toggleLabelInput(select, signature) {
  const model = select.value;
  select.closest(".controls").querySelectorAll(".label-input").forEach((label) => {
    label.hidden = !(model && models[model].signatures[signature] && wantsLabel(model, signature));
  });
}

function start() {
  const params = new URLSearchParams(location.search);
  // served over http(s): the page's own server; opened as a file: TF Serving's default REST port
  const here = location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8501";
  $("#base").value = params.get("base") ?? here;
  $("#models").value = params.get("models") || "";
  $("#connect").addEventListener("submit", (event) => {
    event.preventDefault();
    act($("#connect-button"), connect);
  });
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showPanel(button.dataset.panel));
  }
  $("#sample-button").addEventListener("click", () => act($("#sample-button"), sampleGrid));
  $("#latent-button").addEventListener("click", () => act($("#latent-button"), drawLatentMap));
  $("#interpolate-button").addEventListener("click", () => act($("#interpolate-button"), interpolate));
  $("#sample-model").addEventListener("change", () => toggleLabelInput($("#sample-model"), "sample"));
  $("#latent-model").addEventListener("change", () => {
    latent.model = "";
    toggleLabelInput($("#latent-model"), "decode");
  });

  const map = $("#latent-map");
  map.addEventListener("pointerdown", (event) => {
    map.setPointerCapture(event.pointerId);
    decodeAt(event);
  });
  map.addEventListener("pointermove", (event) => { if (event.buttons & 1) decodeAt(event); });

  const canvas = $("#drawing");
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    drawing.pen = true;
    paint(event);
  });
  canvas.addEventListener("pointermove", paint);
  canvas.addEventListener("pointerup", () => { drawing.pen = false; });
  $("#complete-model").addEventListener("change", () => {
    toggleLabelInput($("#complete-model"), "complete");
    resetDrawing();
  });
  $("#complete-digit").addEventListener("change", resetDrawing);
  $("#complete-binarize").addEventListener("change", resetDrawing);
  $("#complete-rows").addEventListener("input", redrawDrawing);
  $("#complete-clear").addEventListener("click", () => {
    $("#complete-digit").value = "";
    resetDrawing();
  });
  $("#complete-button").addEventListener("click", () => act($("#complete-button"), complete));

  $("#policy-model").addEventListener("change", choosePolicy);
  $("#policy-play").addEventListener("click", () => act(null, play));
  $("#policy-stop").addEventListener("click", () => { episode.stop = true; });
  drawEnvironment(new Envs.CartPole());

  playground.digitsReady = loadDigits();
  playground.ready = $("#models").value ? act($("#connect-button"), connect) : Promise.resolve();
}

start();
