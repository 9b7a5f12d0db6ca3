// The contract in JavaScript (js/contract.js) against Python's, bit for bit, on the committed contract goldens
// (melkit.release.golden.write_contract_goldens, the same files the Java core's ContractGoldenTest reads): for every
// image, contract version and size, q from the stored pixels and their EXIF orientation, plain and with
// Shades of Gray (whose illuminant must be the same float64 bits). Run: node --test web_demo/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as contract from "../js/contract.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIR = process.env.MELKIT_CONTRACT_GOLDEN ||
  join(HERE, "..", "..", "android_demo", "app", "src", "test", "resources", "contract");

const M64 = (1n << 64n) - 1n;

/** melkit.release.golden._hash_noise at flat index i: a multiply-xorshift hash mod 2^64 (BigInt: exact). */
function hashNoise(i, seed) {
  let x = ((BigInt(i) + BigInt(seed) * 0x9E3779B9n) * 0x9E3779B97F4A7C15n) & M64;
  x ^= x >> 29n;
  x = (x * 0xBF58476D1CE4E5B9n) & M64;
  x ^= x >> 32n;
  return Number(x >> 56n);
}

/** melkit.release.golden.photo_image(h, w, seed) as RGBA bytes (alpha 255): integers only, as Python and Java. */
function photoImage(h, w, seed) {
  const base = [212, 132, 118];
  const fall = [70, 60, 55];
  const blob = [120, 95, 70];
  const d2max = h * h + w * w;
  const cy = Math.floor(2 * h * 9 / 20);
  const cx = Math.floor(2 * w * 11 / 20);
  const r = Math.floor(Math.min(h, w) * 7 / 10);
  const out = new Uint8ClampedArray(h * w * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const d2 = (2 * y - h) ** 2 + (2 * x - w) ** 2;
      const b2 = (2 * y - cy) ** 2 + (2 * x - cx) ** 2;
      const inside = Math.floor(Math.max(r * r - b2, 0) * 256 / (r * r));
      const stripes = (((3 * x + 5 * y) % 7) - 3) * 10;
      for (let c = 0; c < 3; c++) {
        let v = base[c] - Math.floor(fall[c] * d2 / d2max) - Math.floor(blob[c] * inside / 256);
        v += (hashNoise((y * w + x) * 3 + c, seed) % 7) - 3;
        v = Math.min(255, Math.max(0, v));  // _skin_field's clip
        out[4 * (y * w + x) + c] = Math.min(255, Math.max(0, v + stripes));
      }
      out[4 * (y * w + x) + 3] = 255;
    }
  }
  return out;
}

function bytes(name) {
  return new Uint8Array(readFileSync(join(DIR, name)));
}

function pixels(img) {
  if (img.pixels) return new Uint8ClampedArray(bytes(img.pixels));
  const g = img.generated;
  assert.equal(g.kind, "photo_image");
  const rgba = photoImage(g.height, g.width, g.seed);
  assert.equal(createHash("sha256").update(rgba).digest("hex"), img.pixels_sha256,
    `${img.name}: generated pixels differ from Python's`);
  return rgba;
}

function firstDifference(want, got) {
  if (want.length !== got.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (want[i] !== got[i]) return `byte ${i}: ${got[i]} != ${want[i]}`;
  }
  return null;
}

test("contract goldens: q equals Python's for every image, contract, size and colour constancy", () => {
  const index = JSON.parse(readFileSync(join(DIR, "index.json"), "utf8"));
  assert.equal(index.format, "melkit-contract-golden-2");
  assert.deepEqual(index.contracts, [contract.CONTRACT_V1, contract.CONTRACT_V2]);
  let checked = 0;
  let withCc = 0;
  let boxed = 0;
  let rotated = 0;
  for (const img of index.images) {
    const data = pixels(img);
    const { width, height, orientation } = img;
    assert.equal(data.length, width * height * 4, `${img.name} pixel count`);
    const image = { data, width, height };
    for (const o of img.outputs) {
      const version = o.contract === contract.CONTRACT_V2 ? 2 : 1;
      const what = `${img.name} ${width}x${height} at ${o.size} ${o.color_constancy || ""} ${o.contract} ` +
        `orientation ${orientation}`;
      if (version === 2) {
        const k = contract.boxFactor(contract.uprightWidth(width, height, orientation),
          contract.uprightHeight(width, height, orientation), o.size);
        assert.equal(k, o.box_k, `${what}: box k`);
        boxed += k > 1 ? 1 : 0;
      }
      const got = contract.toQ(image, orientation, o.size, o.color_constancy, version);
      const diff = firstDifference(bytes(o.q), got);
      assert.equal(diff, null, `${what}: q differs from Python's at ${diff}`);
      if (o.color_constancy) {
        const plain = contract.toQ(image, orientation, o.size, null, version);
        const e = contract.illuminant(plain);
        for (let c = 0; c < 3; c++) {
          assert.ok(Object.is(e[c], o.illuminant[c]), `${what}: illuminant ${c} ${e[c]} != ${o.illuminant[c]}`);
        }
        withCc++;
      }
      rotated += orientation !== 1 ? 1 : 0;
      checked++;
    }
  }
  assert.ok(withCc > 0 && boxed > 0 && rotated > 0, "the goldens hold colour constancy, a box step and EXIF");
  console.log(`contract goldens checked: ${checked} (with colour constancy: ${withCc}, v2 box step: ${boxed}, ` +
    `EXIF-rotated: ${rotated})`);
});

test("orientation mapping equals Pillow's exif_transpose for all 8 tags (the model goldens' cases)", () => {
  const golden = join(process.env.MELKIT_GOLDEN || join(HERE, "..", "..", "android_demo", "app", "src", "test",
    "resources", "golden"), "index.json");
  const cases = JSON.parse(readFileSync(golden, "utf8")).orientation_cases;
  const { width, height, rgb } = cases;
  for (const [o, want] of Object.entries(cases.results)) {
    const orientation = Number(o);
    const w = contract.uprightWidth(width, height, orientation);
    const h = contract.uprightHeight(width, height, orientation);
    assert.deepEqual([w, h], [want.width, want.height], `orientation ${o}: size`);
    const got = [];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const s = contract.sourceIndex(x, y, width, height, orientation);
        got.push(rgb[3 * s], rgb[3 * s + 1], rgb[3 * s + 2]);
      }
    }
    assert.deepEqual(got, want.rgb, `orientation ${o}: pixels`);
  }
});

test("encodeInput: step 4 per input dtype", () => {
  const q = Uint8Array.from([0, 127, 128, 255]);
  assert.deepEqual(Array.from(contract.encodeInput(q, "uint8")), [0, 127, 128, 255]);
  assert.deepEqual(Array.from(contract.encodeInput(q, "int8")), [-128, -1, 0, 127]);
  assert.deepEqual(Array.from(contract.encodeInput(q, "float32")), [-1, -1 / 128, 0, 127 / 128]);
  assert.throws(() => contract.encodeInput(q, "int16"), /not supported/);
  assert.throws(() => contract.toQ({ data: new Uint8Array(4), width: 1, height: 1 }, 1, 4, "grey_world"),
    /not implemented/);
});
