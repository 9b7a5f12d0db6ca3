// The page's card, header and postprocessing modules against Python, on the model goldens `melkit bundle`
// wrote for the app's model (android_demo/app/src/test/resources/golden: the released model's card, images
// with their decoded pixels, the exact model input and LiteRT's raw outputs), as the Java core's GoldenTest
// reads them. Run: node --test web_demo/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  CardError, NOT_ASSESSED, parseCard, postTestProbability, PREVALENCES, predict, ratioText, riskBand, shownPMel,
} from "../js/card.js";
import { cardQ, encodeInput } from "../js/contract.js";
import { exifOrientation, ImageError, MAX_PIXELS, readHeader } from "../js/header.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIR = process.env.MELKIT_GOLDEN ||
  join(HERE, "..", "..", "android_demo", "app", "src", "test", "resources", "golden");
const read = (name) => new Uint8Array(readFileSync(join(DIR, name)));
const index = JSON.parse(readFileSync(join(DIR, "index.json"), "utf8"));
const cardJson = JSON.parse(readFileSync(join(DIR, index.card), "utf8"));

test("model goldens: EXIF, input tensor, scores, guard, shown P(mel) and decision equal Python's", () => {
  const card = parseCard(cardJson);
  let guarded = 0;
  for (const img of index.images) {
    const source = read(img.source);
    const header = readHeader(source, img.source);
    assert.equal(header.orientation, img.exif_orientation, `${img.name}: EXIF orientation`);
    assert.equal(exifOrientation(source), img.exif_orientation, `${img.name}: EXIF orientation`);
    const pixels = { data: new Uint8ClampedArray(read(img.pixels)), width: img.width, height: img.height };
    assert.deepEqual([header.width, header.height], [img.width, img.height], `${img.name}: header size`);
    const input = encodeInput(cardQ(pixels, header.orientation, card), card.input.dtype);
    const want = read(img.input);
    assert.deepEqual(new Uint8Array(input.buffer), want, `${img.name}: model input differs from Python's`);
    const p = predict(card, Uint8Array.from(img.output_raw),
      card.domainOutput ? Uint8Array.from(img.domain_output_raw) : null);
    assert.deepEqual(p.scores, img.probabilities, `${img.name}: scores`);
    assert.equal(p.pMel, img.p_mel, `${img.name}: P(mel)`);
    if ("p_shown" in img) assert.ok(Math.abs(p.shownPMel - img.p_shown) < 1e-12, `${img.name}: shown P(mel)`);
    if (card.domainOutput) {
      assert.equal(p.domainScore, img.domain_score, `${img.name}: domain score`);
      assert.equal(p.inDomain, img.in_domain, `${img.name}: in domain`);
      guarded += p.inDomain ? 0 : 1;
    }
    assert.equal(p.decision, img.decision, `${img.name}: decision`);
    if ("borderline" in img) assert.equal(p.borderline, img.borderline, `${img.name}: borderline`);
    if ("meaning" in img) assert.equal(p.meaning, img.meaning, `${img.name}: meaning`);
    if ("risk_band" in img) {  // goldens of a card with risk bands: band index (null: not assessed), LR, post-test
      assert.equal(p.riskBand, img.risk_band === null ? -1 : img.risk_band, `${img.name}: risk band`);
      assert.equal(p.likelihoodRatio, img.likelihood_ratio, `${img.name}: likelihood ratio`);
      assert.deepEqual(p.postTest && p.postTest.map((x) => x.probability), img.post_test, `${img.name}: post-test`);
    }
  }
  assert.ok(index.images.length >= 4);
  if (card.domainOutput) assert.ok(guarded > 0, "the goldens hold a not-assessed image");
  // the card as the app's golden index summarises it: borderline edges, band edges, LRs and prevalences
  if (index.borderline) {
    assert.deepEqual([card.borderlineLow, card.borderlineHigh], [index.borderline.low, index.borderline.high]);
    assert.ok(index.images.some((img) => img.borderline), "the goldens hold a borderline image");
  }
  if (index.risk_bands) {
    const bands = card.riskBands;
    assert.deepEqual([...bands.map((b) => b.low), bands[bands.length - 1].high], index.risk_bands.edges);
    assert.deepEqual(bands.map((b) => b.lr), index.risk_bands.lr);
    assert.deepEqual([...PREVALENCES], index.risk_bands.prevalences);
  }
});

test("a card the page cannot follow is refused with one sentence naming the field", () => {
  const bad = (mutate, pattern) => {
    const c = structuredClone(cardJson);
    mutate(c);
    assert.throws(() => parseCard(c), (e) => e instanceof CardError && pattern.test(e.message) &&
      !e.message.includes("\n"));
  };
  bad((c) => { delete c.sha256; }, /'sha256' is missing/);
  bad((c) => { c.threshold = 1; }, /strictly between 0 and 1/);
  bad((c) => { c.preprocessing.name = "melkit-v9"; }, /not a contract this page implements/);
  bad((c) => { c.preprocessing.color_constancy = "grey_world"; }, /color_constancy/);
  bad((c) => { c.input.shape = [1, 96, 96, 3]; }, /does not fit its image size/);
  bad((c) => { c.labels = ["nv", "bcc"]; }, /does not fit its labels/);
  bad((c) => { c.output.dtype = "int16"; }, /not supported/);
  bad((c) => { c.borderline = { low: 0.6, high: 0.7, method: "m" }; }, /borderline/);
  bad((c) => { c.melkit_card = 2; }, /not a melkit model card/);
  assert.throws(() => parseCard("{not json"), /not valid JSON/);
});

test("borderline band, fold and temperature: the shown probability and meaning follow the card", () => {
  const c = structuredClone(cardJson);
  c.borderline = { low: 0.45, high: 0.55, method: "test" };
  const card = parseCard(c);
  const step = card.output.scale;
  const at = (pMel) => Uint8Array.from([Math.round((1 - pMel) / step), Math.round(pMel / step)]);
  const inDomain = Uint8Array.from([0]);
  assert.equal(predict(card, at(0.5), inDomain).meaning, "borderline: melanoma-suspicious");
  assert.equal(predict(card, at(0.47), inDomain).meaning, "borderline: nevus-like");
  assert.equal(predict(card, at(0.2), inDomain).meaning, "nevus-like");
  const out = predict(card, at(0.5), Uint8Array.from([255]));
  assert.equal(out.decision, NOT_ASSESSED);
  assert.equal(out.borderline, false);
  // the fold: the card's raw threshold 0.5 shows as the trained threshold
  assert.ok(Math.abs(shownPMel(card, card.threshold) - c.threshold_fold.threshold) < 1e-3);
  c.calibration = { fitted_on: "x", policy: "youden", n: 40, temperature: 2.0 };
  const tempered = parseCard(c);
  assert.ok(shownPMel(tempered, 0.9) < shownPMel(card, 0.9));
});

/** The golden card with four risk bands around its threshold, the last one's LR not measured. */
function withBands(threshold) {
  const c = structuredClone(cardJson);
  const edges = [0, 0.2, threshold, 0.8, 1];
  const lrs = [0.05, 0.6, 2.5, null];
  c.likelihood_ratios = { method: "test", tail: 0.05,
    bands: lrs.map((lr, k) => ({ name: `band ${k}`, low: edges[k], high: edges[k + 1], lr })) };
  return c;
}

test("risk bands: the band of an output as melkit's band_of, its LR and the post-test probabilities", () => {
  const c = withBands(cardJson.threshold);
  const card = parseCard(c);
  const t = card.threshold;
  const step = card.output.scale;
  const zp = card.output.zeroPoint;
  const at = (pMel) => Uint8Array.from([Math.round((1 - pMel) / step) + zp, Math.round(pMel / step) + zp]);
  assert.equal(card.riskBands.length, 4);
  // band k holds low <= p < high; an output at an inner edge (the threshold included) is in the band above; the
  // last band holds 1; outside [0, 1] the outer bands; NaN none
  const cases = [[0, 0], [0.1, 0], [0.2 - 1e-12, 0], [0.2, 1], [t - 1e-12, 1], [t, 2], [0.8 - 1e-12, 2], [0.8, 3],
    [0.99, 3], [1, 3], [1.5, 3], [-0.1, 0], [NaN, -1]];
  for (const [pMel, want] of cases) assert.equal(riskBand(card, pMel), want, `P(mel) ${pMel}`);
  const noBands = structuredClone(cardJson);
  delete noBands.likelihood_ratios;  // a card from before risk bands (release 2.1.0)
  assert.equal(riskBand(parseCard(noBands), 0.5), -1, "a card without bands");
  assert.deepEqual(parseCard(noBands).riskBands, []);
  const plain = predict(parseCard(noBands), at(0.6), Uint8Array.from([0]));
  assert.deepEqual([plain.riskBand, plain.riskBandName, plain.likelihoodRatio, plain.postTest], [-1, null, null, null]);

  const inDomain = Uint8Array.from([0]);
  for (const pMel of [0.05, 0.3, 0.6, 0.95]) {
    const p = predict(card, at(pMel), inDomain);
    assert.ok(p.inDomain);
    assert.equal(p.riskBand, riskBand(card, p.pMel));
    assert.equal(p.riskBandName, `band ${p.riskBand}`);
    assert.equal(p.likelihoodRatio, c.likelihood_ratios.bands[p.riskBand].lr);
  }
  const high = predict(card, at(0.6), inDomain);
  assert.equal(high.riskBand, 2);
  assert.deepEqual(high.postTest.map((x) => x.prevalence), PREVALENCES);
  // post-test odds = prior odds x LR: at 15 % prevalence and LR 2.5, odds 0.15 / 0.85 x 2.5
  const odds = (0.15 / 0.85) * 2.5;
  assert.ok(Math.abs(high.postTest[1].probability - odds / (1 + odds)) < 1e-15);
  assert.ok(high.postTest.every((x) => x.probability > x.prevalence), "an LR over 1 raises the probability");
  assert.ok(predict(card, at(0.05), inDomain).postTest.every((x) => x.probability < x.prevalence));
  // a band whose LR could not be measured: its name, no LR, no post-test probability
  const top = predict(card, at(0.95), inDomain);
  assert.deepEqual([top.riskBand, top.riskBandName, top.likelihoodRatio, top.postTest], [3, "band 3", null, null]);
  // not assessed: no band at all
  const out = predict(card, at(0.95), Uint8Array.from([255]));
  assert.equal(out.decision, NOT_ASSESSED);
  assert.deepEqual([out.riskBand, out.riskBandName, out.likelihoodRatio, out.postTest], [-1, null, null, null]);
  assert.equal(postTestProbability(null, 0.05), null);
  assert.equal(postTestProbability(1, 0.4), 0.4);
  // two significant digits in plain decimals, as the app's Prediction.ratioText
  const texts = [[0.052, "0.052"], [0.0526, "0.053"], [3.14, "3.1"], [12.4, "12"], [1, "1"], [50, "50"],
    [1234, "1200"], [99.5, "100"], [5.23e-7, "0.00000052"], [null, "n/a"], [NaN, "n/a"]];
  for (const [lr, want] of texts) assert.equal(ratioText(lr), want, `LR ${lr}`);
});

test("risk bands the page cannot follow are refused with one sentence naming the field", () => {
  const t = cardJson.threshold;
  const bad = (mutate, pattern) => {
    const c = withBands(t);
    mutate(c.likelihood_ratios, c);
    assert.throws(() => parseCard(c), (e) => e instanceof CardError && pattern.test(e.message) &&
      !e.message.includes("\n"), pattern.source);
  };
  bad((r) => { delete r.method; }, /'likelihood_ratios\.method' is missing/);
  bad((r, c) => { c.likelihood_ratios = [1, 2]; }, /'likelihood_ratios' must be an object, not an array/);
  bad((r) => { r.bands = r.bands.slice(0, 1); }, /'likelihood_ratios\.bands' must hold at least 2 bands, not 1/);
  bad((r) => { r.bands[1] = "low"; }, /'likelihood_ratios\.bands\[1\]' must be an object, not a string/);
  bad((r) => { delete r.bands[2].name; }, /'likelihood_ratios\.bands\[2\]\.name' is missing/);
  bad((r) => { r.bands[2].high = "0.8"; }, /'likelihood_ratios\.bands\[2\]\.high' must be a number/);
  bad((r) => { delete r.bands[0].lr; }, /'likelihood_ratios\.bands\[0\]\.lr' is missing/);
  bad((r) => { r.bands[0].lr = 0; }, /'likelihood_ratios\.bands\[0\]\.lr' must be a positive number or null, not 0/);
  bad((r) => { r.bands[0].lr = -2; }, /must be a positive number or null, not -2/);
  bad((r) => { r.bands[0].lr = "2"; }, /'likelihood_ratios\.bands\[0\]\.lr' must be a number or null, not a string/);
  bad((r) => { r.bands[1].low = 0.25; }, /'likelihood_ratios\.bands\[1\]\.low' must equal the band before's high \(0\.2\), not 0\.25/);
  bad((r) => { r.bands[0].low = 0.01; }, /'likelihood_ratios\.bands' must run from 0 to 1 in order/);
  bad((r) => { r.bands[3].high = 0.99; }, /must run from 0 to 1 in order/);
  bad((r) => { r.bands[0].high = 0.9; r.bands[1].low = 0.9; }, /must run from 0 to 1 in order/);
  bad((r) => { r.bands[1].high = r.bands[2].low = t + 0.01; }, /must have an edge at the threshold/);
  // what melkit accepts, the page accepts: free-form keys, a null LR, empty bands (low == high)
  const c = withBands(t);
  c.likelihood_ratios.per_source = { ham10000: [1, 2, 3, 4] };
  c.likelihood_ratios.bands.forEach((b) => { b.melanoma_share = 0.1; });
  c.likelihood_ratios.bands.splice(1, 0, { name: "empty", low: 0.2, high: 0.2, lr: null });
  const card = parseCard(c);
  assert.equal(card.riskBands.length, 5);
  assert.equal(riskBand(card, 0.2), 2, "an output at an edge with an empty band below it: the band above");
});

test("image headers: formats, sizes and the pixel limit are read before any decoding", () => {
  const png = (w, h) => {
    const b = new Uint8Array(33);
    b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    new DataView(b.buffer).setUint32(16, w);
    new DataView(b.buffer).setUint32(20, h);
    return b;
  };
  const whole = (b) => Uint8Array.from([...b, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
  assert.deepEqual(readHeader(whole(png(600, 450))), { format: "PNG", width: 600, height: 450, orientation: 1 });
  assert.throws(() => readHeader(png(600, 450), "cut.png"), /cut\.png is damaged or incomplete/);
  assert.throws(() => readHeader(png(10000, 5001), "big.png"),
    (e) => e instanceof ImageError && /big\.png is 10000x5001 .* over melkit's limit of 50 Mpx/.test(e.message));
  assert.ok(10000 * 5000 <= MAX_PIXELS);
  readHeader(whole(png(10000, 5000)));
  assert.throws(() => readHeader(new TextEncoder().encode("hello, this is text"), "notes.jpg"),
    /notes\.jpg is not an image this page reads/);
  assert.throws(() => readHeader(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0, 0, 0, 0, 0, 0]), "cut.jpg"),
    /cut\.jpg is damaged or incomplete/);
  const jpeg = read(index.images.find((i) => i.source.endsWith(".jpg")).source);
  assert.equal(readHeader(jpeg).format, "JPEG");
  assert.throws(() => readHeader(jpeg.subarray(0, jpeg.length - 40), "half.jpg"),
    /half\.jpg is damaged or incomplete: the JPEG file ends before its image does/);
});

test("sha256: the plain implementation (pages opened over plain http) equals node's", async () => {
  const { createHash } = await import("node:crypto");
  const { sha256Plain } = await import("../js/sha256.js");
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000]) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
    assert.equal(sha256Plain(b), createHash("sha256").update(b).digest("hex"), `${n} bytes`);
  }
});
