// The page's batch patch (js/tflite.js fixBatch) on the committed models: release 2.1.0
// (tflite_models/previous-2.1.0/) declares a dynamic batch (-1), which LiteRT.js refuses; 3.0.0 declares 1.
// The patch must change only those int32s, to 1, and leave a model that already has batch 1 as it is.
// Run: node --test web_demo/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { fixBatch, modelIo } from "../js/tflite.js";

const MODELS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tflite_models");
const RELEASED = join(MODELS, "melkit_mnv2_1_224_int8.tflite");
const PREVIOUS = join(MODELS, "previous-2.1.0", "melkit_mnv2_1_224_int8.tflite");

/** Byte offsets where two buffers of the same length differ. */
function differing(a, b) {
  const at = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) at.push(i);
  return at;
}

test("batch patch: 2.1.0's dynamic batch becomes 1 and nothing else changes", { skip: !existsSync(PREVIOUS) &&
  "tflite_models/previous-2.1.0 is not here" }, () => {
  const bytes = new Uint8Array(readFileSync(PREVIOUS));
  const before = Uint8Array.from(bytes);
  const io = modelIo(bytes);
  assert.equal(io.inputs[0].shapeSignature[0], -1, "2.1.0 declares batch -1 (the case the patch is for)");
  const fixed = fixBatch(bytes);
  assert.deepEqual(bytes, before, "the caller's bytes are not changed");
  assert.equal(fixed.bytes.length, bytes.length);
  assert.ok(fixed.changed >= io.inputs.length + io.outputs.length, `${fixed.changed} tensors changed`);
  // only the changed int32s differ: -1 (ff ff ff ff) became 1 (01 00 00 00), the low byte of each
  const diff = differing(bytes, fixed.bytes);
  assert.equal(diff.length, 4 * fixed.changed);
  for (let k = 0; k < diff.length; k += 4) {
    const at = diff[k];
    assert.deepEqual(diff.slice(k, k + 4), [at, at + 1, at + 2, at + 3]);
    assert.deepEqual([...bytes.subarray(at, at + 4)], [255, 255, 255, 255]);
    assert.deepEqual([...fixed.bytes.subarray(at, at + 4)], [1, 0, 0, 0]);
  }
  // what the page checks against the card is the same, with batch 1 declared; patching again changes nothing
  const after = modelIo(fixed.bytes);
  const plain = (t) => ({ ...t, shapeSignature: t.shapeSignature.map((d, i) => (i === 0 && d === -1 ? 1 : d)) });
  assert.deepEqual(after, { ...io, inputs: io.inputs.map(plain), outputs: io.outputs.map(plain) });
  assert.deepEqual(after.inputs[0].shapeSignature, after.inputs[0].shape);
  assert.equal(fixBatch(fixed.bytes).changed, 0);
});

test("batch patch: the released model (batch 1) is loaded as it is", () => {
  const bytes = new Uint8Array(readFileSync(RELEASED));
  const io = modelIo(bytes);
  for (const t of [...io.inputs, ...io.outputs]) assert.notEqual(t.shapeSignature[0], -1, t.name);
  const fixed = fixBatch(bytes);
  assert.equal(fixed.changed, 0);
  assert.deepEqual(fixed.bytes, bytes);
});
