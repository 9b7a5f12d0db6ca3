// The model card (<model>.json beside the .tflite, written by melkit convert) and the model's output read as the
// card says: a mirror of the Java core's ModelCard, TensorSpec, Postprocessor and Prediction
// (android_demo/app/src/main/java/org/melkit/core/) and of melkit/core/probability.py, risk bands included. The page trusts nothing
// else about the model: a card it could not follow exactly is refused with one sentence naming the field.
// No DOM: this module runs in the browser and in Node (web_demo/test/card.test.js).

import { CONTRACT_V1, CONTRACT_V2, SHADES_OF_GRAY } from "./contract.js";

export const SUSPICIOUS = "melanoma-suspicious";
export const NEVUS_LIKE = "nevus-like";
export const NOT_ASSESSED = "not assessed";
export const BORDERLINE = "borderline: ";
/** What melkit predict says of an image the domain guard rejects (melkit/core/card.py NOT_ASSESSED). */
export const NOT_ASSESSED_TEXT = "not assessed: this does not look like a dermoscopic image of a skin lesion";
const DTYPES = ["uint8", "int8", "float32"];
/** The shares of melanoma among the lesions examined at which a result's post-test probability is shown
 * (melkit/core/probability.py PREVALENCES, MainActivity.PREVALENCES). */
export const PREVALENCES = Object.freeze([0.05, 0.15, 0.40]);

/** A card that cannot be followed: the message is one sentence for a person. */
export class CardError extends Error {}

function kind(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : Number.isFinite(v) ? "a number" : String(v);
  return typeof v;
}

const TESTS = {
  "a string": (v) => typeof v === "string",
  "a number": (v) => typeof v === "number" && Number.isFinite(v),
  "an integer": (v) => Number.isInteger(v),
  "an object": (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  "an array": (v) => Array.isArray(v),
};

/** Field ``key`` of ``o``, present and of JSON type ``type``; CardError naming the field if not. */
function field(o, where, key, type, nullable = false) {
  const name = where ? `${where}.${key}` : key;
  if (!Object.prototype.hasOwnProperty.call(o, key)) throw new CardError(`model card field '${name}' is missing`);
  const v = o[key];
  if (v === null && nullable) return null;
  if (!TESTS[type](v)) {
    throw new CardError(`model card field '${name}' must be ${type}${nullable ? " or null" : ""}, not ${kind(v)}`);
  }
  return v;
}

/** A tensor as the card promises it (TensorSpec.java): name, shape, dtype, quantization (scale 0: none). */
function tensorSpec(o, where) {
  const name = field(o, where, "name", "a string");
  const shape = field(o, where, "shape", "an array");
  shape.forEach((d, i) => {
    if (!Number.isInteger(d)) throw new CardError(`model card field '${where}.shape[${i}]' must be an integer`);
  });
  const dtype = field(o, where, "dtype", "a string");
  const q = field(o, where, "quantization", "an object", true);
  const scale = q === null ? 0 : field(q, `${where}.quantization`, "scale", "a number");
  const zeroPoint = q === null ? 0 : field(q, `${where}.quantization`, "zero_point", "an integer");
  if (!DTYPES.includes(dtype)) throw new CardError(`the card's ${where} type ${dtype} is not supported`);
  if (dtype !== "float32" && !(scale > 0)) throw new CardError(`the card's ${where} is ${dtype} without quantization`);
  return { name, shape: shape.slice(), dtype, scale, zeroPoint, elements: shape.reduce((a, b) => a * b, 1) };
}

/**
 * Parse and check a card (its JSON text or object); CardError (one sentence) if the page cannot follow it.
 * The same checks as ModelCard.java: every required field present and typed, a contract this page implements,
 * input [1, S, S, 3], output one score per label with "mel" among them, a threshold strictly between 0 and 1,
 * and the optional domain_guard, threshold_fold, calibration, borderline and likelihood_ratios records.
 */
export function parseCard(json) {
  let o = json;
  if (typeof json === "string") {
    try {
      o = JSON.parse(json);
    } catch (e) {
      throw new CardError("the model card is not valid JSON");
    }
  }
  if (!TESTS["an object"](o) || o.melkit_card !== 1) throw new CardError("this is not a melkit model card (version 1)");
  const s = (key) => field(o, "", key, "a string");
  const labels = field(o, "", "labels", "an array");
  labels.forEach((l, i) => {
    if (typeof l !== "string") throw new CardError(`model card field 'labels[${i}]' must be a string`);
  });
  const p = field(o, "", "preprocessing", "an object");
  const contract = field(p, "preprocessing", "name", "a string");
  for (const key of ["color", "resize", "rounding", "scale"]) field(p, "preprocessing", key, "a string");
  const mean = field(p, "preprocessing", "mean", "a number");
  const std = field(p, "preprocessing", "std", "a number");
  const iq = field(p, "preprocessing", "input_quantization", "an object");
  field(iq, "preprocessing.input_quantization", "dtype", "a string");
  field(iq, "preprocessing.input_quantization", "scale", "a number");
  field(iq, "preprocessing.input_quantization", "zero_point", "an integer");
  const imageSize = field(p, "preprocessing", "image_size", "an integer");
  let colorConstancy = null;
  if (Object.prototype.hasOwnProperty.call(p, "color_constancy")) {
    colorConstancy = p.color_constancy;
    if (colorConstancy !== SHADES_OF_GRAY) {
      throw new CardError(`model card field 'preprocessing.color_constancy' is ${JSON.stringify(colorConstancy)}, ` +
        `not one this page implements (${SHADES_OF_GRAY})`);
    }
  }
  if (![CONTRACT_V1, CONTRACT_V2].includes(contract) || mean !== 128 || std !== 128) {
    throw new CardError(`preprocessing ${contract} is not a contract this page implements (${CONTRACT_V1} or ` +
      `${CONTRACT_V2})`);
  }
  const card = {
    name: s("name"), version: s("version"), variant: s("variant"), modelFile: s("model_file"),
    sha256: s("sha256").toLowerCase(), sizeBytes: field(o, "", "size_bytes", "an integer"),
    labels: labels.slice(), labelsFile: s("labels_file"), melIndex: labels.indexOf("mel"),
    threshold: field(o, "", "threshold", "a number"), thresholdPolicy: s("threshold_policy"),
    decision: s("decision"), imageSize, contract, contractVersion: contract === CONTRACT_V2 ? 2 : 1,
    colorConstancy,
    input: tensorSpec(field(o, "", "input", "an object"), "input"),
    output: tensorSpec(field(o, "", "output", "an object"), "output"),
    notice: s("not_a_medical_device"),
    license: typeof o.license === "string" ? o.license : null,
    author: typeof o.author === "string" ? o.author : null,
    intendedUse: typeof o.intended_use === "string" ? o.intended_use : null,
    domainOutput: null, domainThreshold: NaN, foldLogit: 0, foldThreshold: NaN, temperature: NaN,
    borderlineLow: NaN, borderlineHigh: NaN,
  };
  field(o.output, "output", "meaning", "a string");
  for (const key of ["source_run", "training_data", "validation", "selfcheck", "versions"]) {
    field(o, "", key, "an object");
  }
  if ("domain_guard" in o) {
    const g = field(o, "", "domain_guard", "an object");
    const go = field(g, "domain_guard", "output", "an object");
    card.domainOutput = tensorSpec(go, "domain_guard.output");
    card.domainOutput.index = field(go, "domain_guard.output", "index", "an integer");
    card.domainThreshold = field(g, "domain_guard", "threshold", "a number");
    field(g, "domain_guard", "method", "a string");
    if (card.domainOutput.index !== 1 || card.domainOutput.elements !== 1) {
      throw new CardError("the card's domain guard is not the one score after the probabilities this page reads");
    }
  }
  if ("threshold_fold" in o) {
    const fo = field(o, "", "threshold_fold", "an object");
    card.foldThreshold = field(fo, "threshold_fold", "threshold", "a number");
    card.foldLogit = field(fo, "threshold_fold", "logit", "a number");
    field(fo, "threshold_fold", "method", "a string");
    if (!(card.foldThreshold > 0 && card.foldThreshold < 1)) {
      throw new CardError("model card field 'threshold_fold.threshold' must be in (0, 1)");
    }
  }
  let clip = card.output.scale > 0 && card.output.dtype !== "float32" ? card.output.scale / 2 : 1e-6;
  if ("calibration" in o) {
    const c = field(o, "", "calibration", "an object");
    if (typeof c.temperature === "number") card.temperature = c.temperature;
    const fit = c.temperature_fit;
    if (fit && typeof fit === "object" && typeof fit.logit_clip === "number") clip = fit.logit_clip;
  }
  card.logitClip = clip;
  const sh = card.input.shape;
  if (sh.length !== 4 || sh[0] !== 1 || sh[1] !== imageSize || sh[2] !== imageSize || sh[3] !== 3) {
    throw new CardError(`the card's input [${sh}] does not fit its image size ${imageSize}`);
  }
  const os = card.output.shape;
  if (card.melIndex < 0 || os[os.length - 1] !== labels.length || card.output.elements !== labels.length) {
    throw new CardError(`the card's output [${os}] does not fit its labels ${labels.join(", ")}`);
  }
  if (!(card.threshold > 0 && card.threshold < 1)) {
    throw new CardError(`model card field 'threshold' must be a probability strictly between 0 and 1, not ` +
      `${card.threshold}`);
  }
  if ("borderline" in o) {
    const b = field(o, "", "borderline", "an object");
    const low = field(b, "borderline", "low", "a number");
    const high = field(b, "borderline", "high", "a number");
    field(b, "borderline", "method", "a string");
    if (!(low >= 0 && low <= card.threshold && card.threshold <= high && high <= 1)) {
      throw new CardError(`model card field 'borderline' must hold 0 <= low <= threshold <= high <= 1, not low ` +
        `${low}, threshold ${card.threshold}, high ${high}`);
    }
    card.borderlineLow = low;
    card.borderlineHigh = high;
  }
  card.riskBands = riskBands(o, card.threshold);
  return Object.freeze(card);
}

/**
 * The optional likelihood_ratios (melkit/core/likelihood.py), checked as melkit (card.py _likelihood_ratios) and
 * the Java core (ModelCard.riskBands) check them: at least 2 bands, each with a name, low, high and an LR
 * (positive, or null where it could not be measured); contiguous (each low exactly the band before's high), from
 * exactly 0 to exactly 1 in order, one edge at the threshold. The rest is free-form. [] without the field.
 */
function riskBands(o, threshold) {
  const where = "likelihood_ratios";
  if (!(where in o)) return Object.freeze([]);
  const r = field(o, "", where, "an object");
  field(r, where, "method", "a string");
  const raw = field(r, where, "bands", "an array");
  if (raw.length < 2) {
    throw new CardError(`model card field '${where}.bands' must hold at least 2 bands, not ${raw.length}`);
  }
  const edges = [];
  const bands = raw.map((b, k) => {
    const at = `${where}.bands[${k}]`;
    if (!TESTS["an object"](b)) throw new CardError(`model card field '${at}' must be an object, not ${kind(b)}`);
    const name = field(b, at, "name", "a string");
    const low = field(b, at, "low", "a number");
    const high = field(b, at, "high", "a number");
    if (!Object.prototype.hasOwnProperty.call(b, "lr")) throw new CardError(`model card field '${at}.lr' is missing`);
    const lr = b.lr;
    if (lr !== null && typeof lr !== "number") {
      throw new CardError(`model card field '${at}.lr' must be a number or null, not ${kind(lr)}`);
    }
    if (lr !== null && !(Number.isFinite(lr) && lr > 0)) {
      throw new CardError(`model card field '${at}.lr' must be a positive number or null, not ${lr}`);
    }
    if (k > 0 && low !== edges[k]) {  // exactly: the bands share their edges
      throw new CardError(`model card field '${at}.low' must equal the band before's high (${edges[k]}), not ${low}`);
    }
    edges[k] = low;
    edges[k + 1] = high;
    return Object.freeze({ index: k, name, low, high, lr });
  });
  if (edges[0] !== 0 || edges[edges.length - 1] !== 1 || edges.some((e, i) => i > 0 && !(e >= edges[i - 1]))) {
    throw new CardError(`model card field '${where}.bands' must run from 0 to 1 in order, not [${edges.join(", ")}]`);
  }
  if (!edges.includes(threshold)) {
    throw new CardError(`model card field '${where}.bands' must have an edge at the threshold ${threshold}`);
  }
  return Object.freeze(bands);
}

/**
 * The index of the risk band holding the raw P(mel) (probability.py band_of, ModelCard.riskBand in Java): band k
 * holds low <= pMel < high, an output at an inner edge is in the band above it, 1 (and above) in the last band,
 * 0 (and below) in the first; -1 for NaN and for a card without bands. Whether the image was assessed at all is
 * the caller's (predict).
 */
export function riskBand(card, pMel) {
  if (card.riskBands.length === 0 || Number.isNaN(pMel)) return -1;
  let k = 0;
  for (let i = 1; i < card.riskBands.length; i++) k += card.riskBands[i].low <= pMel ? 1 : 0;  // inner edges <= pMel
  return k;
}

/**
 * The probability of melanoma after a result with likelihood ratio ``lr`` where ``prevalence`` of the lesions
 * examined are melanomas: post-test odds = prior odds x LR (probability.py post_test_probability); null without
 * an LR.
 */
export function postTestProbability(lr, prevalence) {
  if (lr === null) return null;
  const odds = (prevalence / (1.0 - prevalence)) * lr;
  return odds / (1.0 + odds);
}

/**
 * A likelihood ratio as a person reads it: two significant digits in plain decimals ("0.052", "3.1", "12",
 * "1200"), as the Android app's Prediction.ratioText; "n/a" for null or a number that is none.
 */
export function ratioText(lr) {
  if (lr === null || !Number.isFinite(lr)) return "n/a";
  // toPrecision rounds the exact value half up, as Java's BigDecimal does; its exponent form ("1.2e+3" for 1200,
  // "5.2e-7") is written out in plain decimals here
  const [mantissa, e] = lr.toPrecision(2).split("e");
  const exp = e === undefined ? 0 : Number(e);
  const digits = mantissa.replace(".", "");
  if (exp > 0) return digits.padEnd(exp + 1, "0");  // exponent form only from 100 up: digits, then zeros
  const plain = exp < 0 ? "0." + "0".repeat(-exp - 1) + digits : mantissa;
  return plain.includes(".") ? plain.replace(/0+$/, "").replace(/\.$/, "") : plain;
}

/**
 * The probability shown to a person for the raw P(mel) (probability.py shown_p_mel, ModelCard.shownPMel):
 * unfolded on the odds when the threshold was folded in, then tempered when melkit calibrate fitted one.
 */
export function shownPMel(card, pMel) {
  let p = pMel;
  if (card.foldLogit !== 0) {
    const odds = p * Math.exp(card.foldLogit);
    p = odds / (odds + (1.0 - p));
  }
  if (!Number.isNaN(card.temperature)) {
    const q = Math.min(Math.max(p, card.logitClip), 1.0 - card.logitClip);
    p = 1.0 / (1.0 + Math.exp(-(Math.log(q) - Math.log1p(-q)) / card.temperature));
  }
  return p;
}

/** Whether the raw P(mel) lies in the card's borderline band, edges included; false without one. */
export function isBorderline(card, pMel) {
  return !Number.isNaN(card.borderlineLow) && pMel >= card.borderlineLow && pMel <= card.borderlineHigh;
}

/** Dequantized scores, (raw - zero_point) * scale in float64 (Postprocessor.scores); floats as they are. */
export function scores(raw, spec) {
  if (raw.length !== spec.elements) throw new CardError(`${raw.length} values for the card's output of ${spec.elements}`);
  return Array.from(raw, (v) => (spec.scale > 0 ? (Number(v) - spec.zeroPoint) * spec.scale : Number(v)));
}

/**
 * The prediction for one image from the model's raw outputs (typed arrays as LiteRT gives them): scores, raw
 * and shown P(mel), the decision at the card's threshold, the guard's verdict, borderline and the meaning to
 * show (Postprocessor.predict and Prediction in Java), and for an assessed image of a card with risk bands its
 * band (index, name), the band's likelihood ratio and the post-test probability at each of PREVALENCES (as
 * melkit predict's risk_band and likelihood_ratio: none for an image not assessed, null LR where the card could
 * not measure it). ``domainRaw`` is needed when the card has a guard.
 */
export function predict(card, raw, domainRaw = null) {
  const s = scores(raw, card.output);
  const pMel = s[card.melIndex];
  let domainScore = NaN;
  let inDomain = true;
  if (card.domainOutput) {
    if (domainRaw === null) throw new CardError("the card has a domain guard but the model gave no domain score");
    domainScore = scores(domainRaw, card.domainOutput)[0];
    inDomain = domainScore <= card.domainThreshold;  // false for NaN
  }
  const suspicious = inDomain && pMel >= card.threshold;
  const borderline = inDomain && isBorderline(card, pMel);
  const decision = !inDomain ? NOT_ASSESSED : suspicious ? SUSPICIOUS : NEVUS_LIKE;
  const band = inDomain ? card.riskBands[riskBand(card, pMel)] || null : null;
  const likelihoodRatio = band === null ? null : band.lr;
  return {
    scores: s, pMel, shownPMel: shownPMel(card, pMel), threshold: card.threshold,
    shownThreshold: shownPMel(card, card.threshold), domainScore, inDomain, suspicious, borderline, decision,
    meaning: borderline ? BORDERLINE + decision : decision,
    riskBand: band === null ? -1 : band.index, riskBandName: band === null ? null : band.name, likelihoodRatio,
    postTest: likelihoodRatio === null ? null
      : PREVALENCES.map((prevalence) => ({ prevalence, probability: postTestProbability(likelihoodRatio, prevalence) })),
  };
}
