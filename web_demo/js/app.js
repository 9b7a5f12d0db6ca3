// The page: loads the bundled model, its card and labels (melkit-web.json, written by `melkit bundle --web`),
// checks them against each other as melkit does, runs LiteRT.js on WebAssembly, and shows for each image what
// `melkit predict` and the Android app show: P(mel) as the card says to show it, the decision in the card's
// words, "not assessed" from the domain guard (no score), the borderline band, the risk band with its likelihood
// ratio and post-test probabilities, and the latency. Every error a person can cause or meet is one sentence on
// the page, never a stack trace.

import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";

import { CardError, NOT_ASSESSED, parseCard, predict, ratioText } from "./card.js";
import { cardQ, encodeInput, SHADES_OF_GRAY } from "./contract.js";
import { decodeImage, orientationMode } from "./decode.js";
import { ImageError } from "./header.js";
import { sha256Hex } from "./sha256.js";
import { fixBatch, ModelError, modelIo } from "./tflite.js";

const MANIFEST = "melkit-web.json";
const WASM = "./vendor/litertjs/wasm/";
// The released model's intended use (tflite_models/MODEL_CARD.md), shown unless the card states its own.
const INTENDED_USE = "Research and engineering reference: shows P(melanoma) for a dermoscopic image of one " +
  "pigmented lesion that is a nevus or a melanoma. Not for any clinical decision, for lesions that are neither " +
  "(the model will still answer), for clinical (non-dermoscopic) photos, or for children.";

const $ = (id) => document.getElementById(id);
const pct = (p) => `${(100 * p).toFixed(1)}\u00a0%`;  // a no-break space: "94.7 %" never splits
const state = { card: null, model: null, probsAt: 0, guardAt: -1, seq: 0, queue: Promise.resolve(), last: null };

/** Any error as one sentence for a person: ours carry one; anything else gets a plain one (details: console). */
function sentence(e, fallback) {
  if (e instanceof CardError || e instanceof ImageError || e instanceof ModelError) {
    const m = String(e.message).split("\n")[0];
    return /[.!?]$/.test(m) ? m : `${m}.`;
  }
  console.error(e);
  return fallback;
}

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: "no-cache" });
  } catch (e) {
    throw new ModelError(`The ${what} could not be loaded (${url}): is the page's server still running?`);
  }
  if (!response.ok) throw new ModelError(`The ${what} could not be loaded (${url}: HTTP ${response.status}).`);
  return new Uint8Array(await response.arrayBuffer());
}

function sameQuant(spec, actual) {
  if (spec.dtype === "float32" && !(spec.scale > 0)) return actual === null || actual.scale === 0;
  return actual !== null && actual.zeroPoint === spec.zeroPoint &&
    Math.abs(actual.scale - spec.scale) <= 1e-6 * Math.abs(spec.scale);
}

/** The model file is the one its card describes (ModelCard.check_against): tensors, dtypes, shapes, quantization. */
function checkModel(card, io) {
  const wanted = card.domainOutput ? 2 : 1;
  if (io.inputs.length !== 1 || io.outputs.length !== wanted) {
    throw new ModelError(`The model does not match its card: the card says ${wanted} output(s) and one input, the ` +
      `model has ${io.outputs.length} and ${io.inputs.length}.`);
  }
  const sides = [["input", card.input, io.inputs[0]]];
  for (const [side, spec] of [["output", card.output], ["domain guard output", card.domainOutput]]) {
    if (!spec) continue;
    const got = io.outputs.find((t) => t.name === spec.name);
    if (!got) throw new ModelError(`The model does not match its card: it has no ${side} named ${spec.name}.`);
    sides.push([side, spec, got]);
  }
  for (const [side, spec, got] of sides) {
    if (got.dtype !== spec.dtype || got.shape.join(",") !== spec.shape.join(",") || !sameQuant(spec, got.quantization)) {
      throw new ModelError(`The model does not match its card: its ${side} is ${got.dtype} [${got.shape}], the card ` +
        `says ${spec.dtype} [${spec.shape}] with its quantization.`);
    }
  }
}

function showModel(card, info) {
  const guard = card.domainOutput ? "; images that do not look like dermoscopy are not assessed" : "";
  const band = Number.isNaN(card.borderlineLow) ? ""
    : `; borderline when the model's raw output is within ${card.borderlineLow.toFixed(3)}-` +
      `${card.borderlineHigh.toFixed(3)}`;
  $("model-name").textContent = `${card.name} ${card.version} (${card.variant}, ${card.imageSize} px input)`;
  $("model-use").textContent = card.intendedUse || INTENDED_USE;
  $("model-decision").textContent = `${card.decision} (threshold: P(mel) ${pct(info.shownThreshold)}${guard}${band}).`;
  $("model-contract").textContent = `${card.contract}` +
    (card.colorConstancy === SHADES_OF_GRAY ? " with Shades of Gray colour constancy" : "") +
    `, ${card.imageSize}x${card.imageSize}; EXIF orientation: ${info.exif}.`;
  $("model-license").textContent = [card.license || "not stated in the card", card.author].filter(Boolean).join("; by ");
  $("notice").innerHTML = "";
  const strong = document.createElement("strong");
  strong.textContent = "Not a medical device.";
  $("notice").append(strong, ` ${card.notice} See a dermatologist about any changing or worrying mole.`);
  $("model-info").hidden = false;
}

async function loadModel() {
  const manifestBytes = await fetchBytes(MANIFEST, "page's model list").catch(() => {
    throw new ModelError("No model in this copy of the page: make one with `melkit bundle MODEL --web DIR`, then " +
      "serve it with `melkit web DIR`.");
  });
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch (e) {
    throw new ModelError(`${MANIFEST} is not valid JSON: bundle the page again with melkit bundle --web.`);
  }
  const card = parseCard(new TextDecoder().decode(await fetchBytes(manifest.card, "model card")));
  const labels = new TextDecoder().decode(await fetchBytes(manifest.labels, "labels file")).split(/\s+/).filter(Boolean);
  if (labels.join(",") !== card.labels.join(",")) {
    throw new CardError(`The labels file lists ${labels.join(", ")}, its card ${card.labels.join(", ")}.`);
  }
  if (manifest.model.split("/").pop() !== card.modelFile) {
    throw new CardError(`The card describes ${card.modelFile}, not ${manifest.model.split("/").pop()}.`);
  }
  const bytes = await fetchBytes(manifest.model, "model");
  if (bytes.length !== card.sizeBytes || (await sha256Hex(bytes)) !== card.sha256) {
    throw new ModelError("The model file does not match its card (sha256 differs): bundle them again with " +
      "melkit bundle --web.");
  }
  const io = modelIo(bytes);
  checkModel(card, io);
  const fixed = fixBatch(bytes);  // release 2.1.0 declares batch -1, which LiteRT.js refuses; 3.0.0 declares 1
  await loadLiteRt(WASM);
  const model = await loadAndCompile(fixed.bytes, { accelerator: "wasm" });
  const names = model.getOutputDetails().map((d) => (io.signature ? io.signature.outputs[d.name] : d.name));
  state.probsAt = names.indexOf(card.output.name);
  state.guardAt = card.domainOutput ? names.indexOf(card.domainOutput.name) : -1;
  if (state.probsAt < 0 || (card.domainOutput && state.guardAt < 0)) {
    state.probsAt = 0;  // no signature naming them: the subgraph's order, as the interpreter gives it
    state.guardAt = card.domainOutput ? io.outputs.findIndex((t) => t.name === card.domainOutput.name) : -1;
  }
  state.card = card;
  state.model = model;
  const t0 = performance.now();
  await run(new Uint8Array(card.input.elements).fill(128));  // the first inference sets XNNPACK up
  const firstMs = performance.now() - t0;
  const mode = await orientationMode();
  const info = { shownThreshold: shownThreshold(card), firstMs, batchFixed: fixed.changed,
    exif: mode.applied ? "applied by this browser" : "applied by the page" };
  showModel(card, info);
  return { name: card.name, version: card.version, firstMs, batchFixed: fixed.changed, exif: info.exif };
}

/** The card's threshold on the scale of the P(mel) shown (unfolded, tempered), as predict reports it. */
function shownThreshold(card) {
  return predict(card, new Uint8Array(card.output.elements), card.domainOutput ? new Uint8Array(1) : null)
    .shownThreshold;
}

/** One inference: q (the contract's uint8 image) to (probabilities raw, guard raw or null), copied out of LiteRT. */
async function run(values) {
  const { card, model } = state;
  const input = new Tensor(encodeInput(values, card.input.dtype), card.input.shape);
  let outputs;
  try {
    outputs = await model.run(input);
  } finally {
    input.delete();
  }
  try {
    const raw = outputs[state.probsAt].toTypedArray().slice();
    const guard = state.guardAt >= 0 ? outputs[state.guardAt].toTypedArray().slice() : null;
    return { raw, guard };
  } finally {
    outputs.forEach((t) => t.delete());
  }
}

/**
 * What an assessed image's risk band says (MainActivity.riskText and postTestText in the app): "<band> —
 * likelihood ratio X", what the ratio means in plain words (or that it was not measured), and the probability of
 * melanoma after this result at each prevalence. Nothing without a band (not assessed, or no bands in the card).
 */
function riskNodes(p) {
  if (p.riskBandName === null) return [];
  const line = document.createElement("p");
  line.className = "risk";
  const name = document.createElement("strong");
  name.textContent = p.riskBandName;
  if (p.likelihoodRatio === null) {
    line.append(name, " \u2014 likelihood ratio not measured");
    return [line, "The validation images held too few results like this to say how much more common they are " +
      "for melanomas than for nevi."];
  }
  const lr = ratioText(p.likelihoodRatio);
  line.append(name, ` \u2014 likelihood ratio ${lr}`);
  const list = document.createElement("ul");
  list.className = "post-test";
  list.append(...p.postTest.map(({ prevalence, probability }) => Object.assign(document.createElement("li"),
    { textContent: `at ${(100 * prevalence).toFixed(0)}\u00a0% prevalence: ${pct(probability)}` })));
  return [line, `Results like this are ${lr} times as common for melanomas as for nevi.`,
    "Post-test probability of melanoma for this result, by the share of melanomas among the lesions examined " +
    "(prevalence):", list];
}

function render(p, f) {
  const { card } = state;
  const result = $("result");
  result.replaceChildren();
  clearResult(result);
  const h = document.createElement("p");
  h.className = `decision ${p.inDomain ? (p.suspicious ? "suspicious" : "nevus") : "not-assessed"}`;
  const lines = [];
  if (!p.inDomain) {
    h.textContent = "Not assessed";
    lines.push("This does not look like a dermoscopic image of a skin lesion, so no melanoma score is given.");
  } else {
    h.textContent = p.meaning.charAt(0).toUpperCase() + p.meaning.slice(1);
    lines.push(`The estimated probability of melanoma is ${pct(p.shownPMel)}, ` +
      `${p.suspicious ? "at or above" : "below"} the model's threshold of ${pct(p.shownThreshold)}.`);
    if (p.borderline) {
      lines.push("It is near the threshold, where the quantized model's rounding can decide: the float model it " +
        "came from might answer otherwise.");
    }
    lines.push(...riskNodes(p));
  }
  lines.push(`Not a medical device: this is no diagnosis.`);
  lines.push(`Time: ${f.msPre.toFixed(0)} ms to decode and preprocess, ${f.msModel.toFixed(0)} ms for the model ` +
    `(LiteRT.js, WebAssembly).`);
  result.append(h, ...lines.map((t) => (typeof t === "string"
    ? Object.assign(document.createElement("p"), { textContent: t }) : t)));
  Object.assign(result.dataset, {
    state: "done", seq: String(f.seq), file: f.name, decision: p.decision, meaning: p.meaning,
    pMel: p.inDomain ? String(p.shownPMel) : "", pRaw: p.inDomain ? String(p.pMel) : "",
    domainScore: Number.isNaN(p.domainScore) ? "" : String(p.domainScore), inDomain: String(p.inDomain),
    borderline: String(p.borderline), msPre: f.msPre.toFixed(2), msModel: f.msModel.toFixed(2),
    // the risk band's name and LR as melkit predict's risk_band and likelihood_ratio ("": none, or not measured)
    riskBand: p.riskBandName === null ? "" : p.riskBandName,
    likelihoodRatio: p.likelihoodRatio === null ? "" : String(p.likelihoodRatio),
    postTest: p.postTest === null ? "" : p.postTest.map((x) => String(x.probability)).join(","),
  });
  const { header, draft } = f.decoded;
  $("preview-caption").textContent = `${f.name}: ${header.width}x${header.height} ${header.format}` +
    (header.orientation !== 1 ? `, EXIF orientation ${header.orientation}` : "") +
    (draft > 1 ? `, reduced 1/${draft} before the contract as melkit predict decodes it` : "") +
    `; the model saw it stretched to ${card.imageSize}x${card.imageSize}.`;
}

/** Only what the latest image gave stays on the result region (tests and assistive tools read it). */
function clearResult(result) {
  for (const key of Object.keys(result.dataset)) delete result.dataset[key];
}

function showError(message, seq) {
  const result = $("result");
  clearResult(result);
  result.replaceChildren(Object.assign(document.createElement("p"), { textContent: "No result for this image." }));
  Object.assign(result.dataset, { state: "error", seq: String(seq), error: message });
  $("error").textContent = message;
  $("error").hidden = false;
  $("preview").hidden = true;
}

async function classify(file) {
  const seq = ++state.seq;
  const name = file.name || "the image";
  $("error").hidden = true;
  $("result").dataset.state = "working";
  try {
    if (!state.model) throw new ModelError("No model is loaded, so the image cannot be assessed.");
    const t0 = performance.now();
    const decoded = await decodeImage(await file.arrayBuffer(), name, state.card);
    const q = cardQ(decoded.image, decoded.orientation, state.card);
    const t1 = performance.now();
    const { raw, guard } = await run(q);
    const t2 = performance.now();
    const p = predict(state.card, raw, guard);
    state.last = { q, decoded, raw, guard };
    const preview = $("preview-img");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    $("preview").hidden = false;
    render(p, { seq, name, decoded, msPre: t1 - t0, msModel: t2 - t1 });
  } catch (e) {
    showError(sentence(e, `${name} could not be assessed: the browser could not read it as an image.`), seq);
  }
}

function enqueue(file) {
  if (!file) return;
  state.queue = state.queue.then(() => classify(file));
}

function wire() {
  for (const id of ["file", "camera"]) {
    $(id).addEventListener("change", (ev) => {
      enqueue(ev.target.files[0]);
      ev.target.value = "";
    });
  }
  const drop = $("drop");
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      $("file").click();
    }
  });
  drop.addEventListener("click", () => $("file").click());
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    enqueue(ev.dataTransfer && ev.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
}

async function start() {
  wire();
  try {
    const info = await loadModel();
    $("model-status").textContent = `Model ${info.name} ${info.version} ready (first inference ` +
      `${info.firstMs.toFixed(0)} ms).`;
    for (const id of ["file", "camera"]) $(id).disabled = false;
    document.body.dataset.ready = "true";
    return info;
  } catch (e) {
    const message = sentence(e, "The model could not be loaded in this browser (LiteRT.js did not start).");
    $("model-status").textContent = message;
    document.body.dataset.ready = "error";
    document.body.dataset.error = message;
    return { error: message };
  }
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(s);
}

// For tests and the curious: the page's state and the last image's contract output, nothing that changes it.
window.melkitDemo = {
  ready: start(),
  lastQ: () => (state.last ? base64(state.last.q) : null),
  lastSize: () => (state.last ? { width: state.last.decoded.image.width, height: state.last.decoded.image.height,
    orientation: state.last.decoded.orientation, draft: state.last.decoded.draft } : null),
  get card() { return state.card; },
  NOT_ASSESSED,
};
