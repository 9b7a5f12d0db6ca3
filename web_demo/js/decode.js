// Step 1 of the contract in the browser: an image file to stored RGBA pixels and the EXIF orientation the
// contract then applies itself (contract.js), as the Android app gets stored pixels from BitmapFactory and
// applies the tag in its core. Decoding is the browser's job: its JPEG decoder may differ from Pillow's by a
// unit here and there (measured by tests/test_web_demo.py). What the page adds, and melkit predict does:
// - the file's header is read first and an image over MAX_PIXELS is refused before anything is decoded;
// - no colour-profile conversion (Pillow ignores ICC profiles), transparency composited over black;
// - for a v2 card, a large JPEG is reduced as Pillow's draft mode (libjpeg's DCT scaling) reduces it before
//   the contract's box step: to ceil(w / s) x ceil(h / s) with melkit's s (8, 4 or 2, the short side kept at
//   least 2 * image_size), here as s x s block means of the full decode, since browsers cannot decode scaled.

import { readHeader, ImageError } from "./header.js";

export const JPEG_DRAFT_SCALES = [8, 4, 2];

/** melkit.data.imageio.draft_scale: the largest s whose decoded short side ceil(short / s) is >= minShort. */
export function draftScale(width, height, minShort) {
  if (!minShort) return 1;
  const short = Math.min(width, height);
  for (const s of JPEG_DRAFT_SCALES) if (Math.ceil(short / s) >= minShort) return s;
  return 1;
}

/** s x s block means (round half up) of an RGBA image, ceil-sized: the last row/column of blocks may be partial. */
export function draftReduce(img, s) {
  const { data, width, height } = img;
  const w = Math.ceil(width / s);
  const h = Math.ceil(height / s);
  const out = new Uint8ClampedArray(w * h * 4);
  const sums = new Float64Array(w * 3);
  const counts = new Float64Array(w);
  for (let by = 0; by < h; by++) {
    sums.fill(0);
    counts.fill(0);
    for (let y = by * s; y < Math.min(height, by * s + s); y++) {
      for (let x = 0; x < width; x++) {
        const i = 4 * (y * width + x);
        const b = Math.floor(x / s);
        sums[3 * b] += data[i];
        sums[3 * b + 1] += data[i + 1];
        sums[3 * b + 2] += data[i + 2];
        counts[b]++;
      }
    }
    for (let b = 0; b < w; b++) {
      const o = 4 * (by * w + b);
      for (let c = 0; c < 3; c++) out[o + c] = Math.floor((sums[3 * b + c] + counts[b] / 2) / counts[b]);
      out[o + 3] = 255;
    }
  }
  return { data: out, width: w, height: h };
}

// A 16x8 JPEG, black left half and white right half, tagged EXIF orientation 2 (mirrored): decoded as stored,
// its first pixel is black; a browser that applies the tag gives white.
const PROBE = "/9j/4AAQSkZJRgABAQAAAQABAAD/4QAiRXhpZgAATU0AKgAAAAgAAQESAAMAAAABAAIAAAAAAAD/2wBDAAMCAgMCAgMDAwMEAwME" +
  "BQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQU" +
  "FBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAIABADAREAAhEBAxEB/8QAFQABAQAAAAAA" +
  "AAAAAAAAAAAACQr/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFAEBAAAAAAAAAAAAAAAAAAAAAP/EABQRAQAAAAAAAAAAAAAAAAAA" +
  "AAD/2gAMAwEAAhEDEQA/ACqBVQD/2Q==";

function pixelsOf(bitmap) {
  const { width, height } = bitmap;
  const canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement("canvas"), { width, height });
  // An opaque canvas starts black: drawing composites transparent pixels over black, as read_rgb does.
  const ctx = canvas.getContext("2d", { alpha: false, willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { data: ctx.getImageData(0, 0, width, height).data, width, height };
}

let exifMode = null;

/**
 * How to get stored pixels from this browser: createImageBitmap with imageOrientation "none" where that keeps
 * the stored orientation (the page then applies the EXIF tag itself, as the Java core does), else with the
 * browser's own orientation applied ("applied": the contract is given orientation 1). Probed once.
 */
export async function orientationMode() {
  if (exifMode === null) {
    exifMode = (async () => {
      const blob = new Blob([Uint8Array.from(atob(PROBE), (c) => c.charCodeAt(0))], { type: "image/jpeg" });
      const tryMode = async (imageOrientation) => {
        const bitmap = await createImageBitmap(blob, { imageOrientation, colorSpaceConversion: "none" });
        const { data } = pixelsOf(bitmap);
        bitmap.close();
        return data[0] < 128 ? "stored" : "applied";
      };
      try {
        if ((await tryMode("none")) === "stored") return { imageOrientation: "none", applied: false };
      } catch (e) { /* an older browser without the "none" value: the default below */ }
      const applied = (await tryMode("from-image")) === "applied";
      return { imageOrientation: "from-image", applied };
    })();
  }
  return exifMode;
}

/**
 * Decode ``bytes`` (an ArrayBuffer of the file) for ``card``: {image: stored RGBA {data, width, height},
 * orientation, header, draft}. ImageError (one sentence) for a file that is not an image, over the pixel limit
 * (before decoding), or that the browser cannot decode.
 */
export async function decodeImage(bytes, name, card) {
  const header = readHeader(new Uint8Array(bytes), name);
  const mode = await orientationMode();
  const types = { JPEG: "image/jpeg", PNG: "image/png", WebP: "image/webp", GIF: "image/gif", BMP: "image/bmp" };
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes], { type: types[header.format] }),
      { imageOrientation: mode.imageOrientation, colorSpaceConversion: "none", premultiplyAlpha: "default" });
  } catch (e) {
    throw new ImageError(`${name} could not be decoded: the ${header.format} file is damaged or incomplete.`);
  }
  let image;
  try {
    image = pixelsOf(bitmap);
  } finally {
    bitmap.close();
  }
  let orientation = mode.applied ? 1 : header.orientation;
  const swapped = image.width === header.height && image.height === header.width && image.width !== image.height;
  if (!mode.applied && header.orientation >= 5 && swapped) orientation = 1;  // applied after all: trust the pixels
  let draft = 1;
  if (header.format === "JPEG" && card.contractVersion >= 2) {
    draft = draftScale(header.width, header.height, 2 * card.imageSize);
    if (draft > 1) image = draftReduce(image, draft);
  }
  return { image, orientation, header, draft };
}
