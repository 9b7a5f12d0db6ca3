// The preprocessing contracts v1 and v2 (melkit/data/contract.py), bit for bit, in JavaScript: decoded RGBA
// pixels and their EXIF orientation to the uint8 image q the model takes. A mirror of the Java core's
// ContractPreprocessor and ExifOrientation (android_demo/app/src/main/java/org/melkit/core/), checked against
// the same contract goldens by `node --test` (web_demo/test/contract.test.js).
//
// Python and Java compute the resize in float32. JavaScript numbers are float64, so every float32 operation is
// done in float64 and rounded with Math.fround: for +, -, * and / of float32 operands that gives exactly the
// float32 result (float64 holds more than twice float32's precision), so the bits are numpy's. Shades of Gray
// is float64 in Python and Java alike, as here. No DOM: this module runs in the browser and in Node.

const f = Math.fround;

export const SHADES_OF_GRAY = "shades_of_gray:p=6";
export const SHADES_OF_GRAY_P = 6;
export const CONTRACT_V1 = "melkit-v1";
export const CONTRACT_V2 = "melkit-v2";

/** Orientations 5-8 swap width and height. */
export function swapsAxes(orientation) {
  return orientation >= 5 && orientation <= 8;
}

export function uprightWidth(width, height, orientation) {
  return swapsAxes(orientation) ? height : width;
}

export function uprightHeight(width, height, orientation) {
  return swapsAxes(orientation) ? width : height;
}

/** Index of the upright pixel (x, y) in the stored width x height image (ExifOrientation.sourceIndex). */
export function sourceIndex(x, y, width, height, orientation) {
  let sx = x;
  let sy = y;
  switch (orientation) {
    case 2: sx = width - 1 - x; sy = y; break;               // mirrored
    case 3: sx = width - 1 - x; sy = height - 1 - y; break;  // rotated 180
    case 4: sx = x; sy = height - 1 - y; break;              // flipped vertically
    case 5: sx = y; sy = x; break;                           // transposed
    case 6: sx = y; sy = height - 1 - x; break;              // needs 90 degrees clockwise
    case 7: sx = width - 1 - y; sy = height - 1 - x; break;  // transverse
    case 8: sx = width - 1 - y; sy = x; break;               // needs 90 degrees counter-clockwise
    default: break;                                          // 1 and unknown values: as stored
  }
  return sy * width + sx;
}

/** Pillow's integer alpha_composite of channel value c with alpha a over opaque black (as read_rgb does). */
export function overBlack(c, a) {
  if (a === 255) return c;
  if (a === 0) return 0;
  const tmp = c * (a * 128) + (0x80 << 7);
  return (((tmp >> 8) + tmp) >> 8) >> 7;
}

/** Step 2a's k: short side // size when the short side is more than 2 * size, else 1 (no box). */
export function boxFactor(width, height, size) {
  const short = Math.min(width, height);
  return short > 2 * size ? Math.floor(short / size) : 1;
}

function checkImage(img) {
  const { data, width, height } = img;
  if (!(width >= 1 && height >= 1 && Number.isInteger(width) && Number.isInteger(height)) ||
      !data || data.length < width * height * 4) {
    throw new RangeError(`bad image ${width}x${height}`);
  }
}

/**
 * Step 2a (contract v2), as preprocess.box_reduce: the upright image reduced by k x k block means, each
 * channel (sum + k*k//2) // (k*k) in integers; the last h % k rows and w % k columns of the upright image are
 * dropped. Blocks are read through the EXIF mapping; transparent pixels are composited over black first.
 * Returns an opaque upright RGBA image {data, width, height}.
 */
export function boxReduce(img, orientation, k) {
  checkImage(img);
  const { data, width, height } = img;
  const w = uprightWidth(width, height, orientation);
  const h = uprightHeight(width, height, orientation);
  const bw = Math.floor(w / k);
  const bh = Math.floor(h / k);
  const n = k * k;
  const half = Math.floor(n / 2);
  const out = new Uint8ClampedArray(bw * bh * 4);
  const sums = new Float64Array(bw * 3);  // at most k*k*255: exact in a double
  for (let by = 0; by < bh; by++) {
    sums.fill(0);
    for (let y = by * k; y < by * k + k; y++) {
      for (let x = 0; x < bw * k; x++) {
        const s = 4 * sourceIndex(x, y, width, height, orientation);
        const a = data[s + 3];
        const bx = 3 * Math.floor(x / k);
        sums[bx] += overBlack(data[s], a);
        sums[bx + 1] += overBlack(data[s + 1], a);
        sums[bx + 2] += overBlack(data[s + 2], a);
      }
    }
    for (let bx = 0; bx < bw; bx++) {
      const o = 4 * (by * bw + bx);
      out[o] = Math.floor((sums[3 * bx] + half) / n);
      out[o + 1] = Math.floor((sums[3 * bx + 1] + half) / n);
      out[o + 2] = Math.floor((sums[3 * bx + 2] + half) / n);
      out[o + 3] = 255;
    }
  }
  return { data: out, width: bw, height: bh };
}

/** TensorFlow's half-pixel scaler in float32: source indices and fractions along one axis. */
export function axisWeights(inSize, outSize) {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float32Array(outSize);
  const scale = f(inSize / outSize);
  for (let i = 0; i < outSize; i++) {
    const center = f(f(f(i + 0.5) * scale) - 0.5);
    const floor = Math.floor(center);
    lo[i] = Math.max(floor, 0);
    hi[i] = Math.min(Math.ceil(center), inSize - 1);
    frac[i] = f(center - floor);
  }
  return { lo, hi, frac };
}

/**
 * Steps 2-3: resize the upright image to size x size (stretch, bilinear, half-pixel centres, float32), round
 * half up and clamp. Returns q as size*size*3 bytes (RGB, row-major), as preprocess.resize_uint8.
 */
export function resizeToQ(img, orientation, size) {
  checkImage(img);
  if (!(size >= 1)) throw new RangeError(`bad size ${size}`);
  const { data, width, height } = img;
  const w = uprightWidth(width, height, orientation);
  const h = uprightHeight(width, height, orientation);
  const ys = axisWeights(h, size);
  const xs = axisWeights(w, size);
  const q = new Uint8Array(size * size * 3);
  let o = 0;
  for (let i = 0; i < size; i++) {
    const fy = ys.frac[i];
    for (let j = 0; j < size; j++) {
      const fx = xs.frac[j];
      const tl = 4 * sourceIndex(xs.lo[j], ys.lo[i], width, height, orientation);
      const tr = 4 * sourceIndex(xs.hi[j], ys.lo[i], width, height, orientation);
      const bl = 4 * sourceIndex(xs.lo[j], ys.hi[i], width, height, orientation);
      const br = 4 * sourceIndex(xs.hi[j], ys.hi[i], width, height, orientation);
      for (let c = 0; c < 3; c++) {
        const vtl = overBlack(data[tl + c], data[tl + 3]);
        const vtr = overBlack(data[tr + c], data[tr + 3]);
        const vbl = overBlack(data[bl + c], data[bl + 3]);
        const vbr = overBlack(data[br + c], data[br + 3]);
        // Horizontal on both rows, then vertical, exactly as preprocess.resize_uint8 (float32 throughout).
        const top = f(vtl + f(f(vtr - vtl) * fx));
        const bottom = f(vbl + f(f(vbr - vbl) * fx));
        const value = f(top + f(f(bottom - top) * fy));
        const r = Math.floor(f(value + 0.5));
        q[o++] = r < 0 ? 0 : r > 255 ? 255 : r;
      }
    }
  }
  return q;
}

/** The p-th root of m in [0, 256) by 64 bisection steps (preprocess._root): the same bits everywhere. */
export function root(m, p) {
  let lo = 0.0;
  let hi = 256.0;
  for (let i = 0; i < 64; i++) {
    const mid = (lo + hi) * 0.5;
    let t = mid;
    for (let k = 1; k < p; k++) t = t * mid;
    if (t <= m) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The illuminant e_c (each channel's Minkowski p-mean) that step 3b divides out of q (RGB bytes). */
export function illuminant(q, p = SHADES_OF_GRAY_P) {
  if (q.length === 0 || q.length % 3 !== 0) throw new RangeError(`${q.length} bytes are not RGB pixels`);
  if (!(p >= 1 && p <= 6)) throw new RangeError(`p must be 1..6 (v^p exact in double), got ${p}`);
  const counts = [new Float64Array(256), new Float64Array(256), new Float64Array(256)];
  for (let i = 0; i < q.length; i++) counts[i % 3][q[i]]++;
  const n = q.length / 3;
  const e = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let sum = 0.0;
    for (let v = 0; v < 256; v++) {
      let power = v;
      for (let k = 1; k < p; k++) power = power * v;
      sum = sum + counts[c][v] * power;
    }
    e[c] = root(sum / n, p);
  }
  return e;
}

/**
 * Step 3b, Shades of Gray colour constancy on q (RGB bytes), as preprocess.shades_of_gray in float64:
 * gain_c = mean(e) / e_c, lut_c[v] = min(255, floor(v * gain_c + 0.5)). A channel that is all zero leaves the
 * image unchanged. Returns a new array.
 */
export function shadesOfGray(q, p = SHADES_OF_GRAY_P) {
  const e = illuminant(q, p);
  if (Math.min(e[0], e[1], e[2]) === 0.0) return Uint8Array.from(q);
  const grey = (e[0] + e[1] + e[2]) / 3.0;
  const lut = [0, 1, 2].map((c) => {
    const gain = grey / e[c];
    const t = new Uint8Array(256);
    for (let v = 0; v < 256; v++) {
      const r = Math.floor(v * gain + 0.5);
      t[v] = r > 255 ? 255 : r;
    }
    return t;
  });
  const out = new Uint8Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = lut[i % 3][q[i]];
  return out;
}

/**
 * The contract's q for a stored RGBA image {data, width, height} with EXIF ``orientation``: for version 2,
 * step 2a when the upright short side is more than 2 * size; then the resize and rounding, and step 3b when
 * ``colorConstancy`` is SHADES_OF_GRAY (null: none). ContractPreprocessor.toQ in Java.
 */
export function toQ(img, orientation, size, colorConstancy = null, version = 1) {
  if (colorConstancy !== null && colorConstancy !== SHADES_OF_GRAY) {
    throw new RangeError(`color_constancy ${colorConstancy} is not implemented`);
  }
  if (version !== 1 && version !== 2) throw new RangeError(`contract version ${version} is not implemented`);
  checkImage(img);
  const k = boxFactor(uprightWidth(img.width, img.height, orientation),
    uprightHeight(img.width, img.height, orientation), size);
  const q = version === 2 && k > 1 ? resizeToQ(boxReduce(img, orientation, k), 1, size)
    : resizeToQ(img, orientation, size);
  return colorConstancy === null ? q : shadesOfGray(q, SHADES_OF_GRAY_P);
}

/** toQ with a parsed card's contract (card.js parseCard): the one entry point of the page. */
export function cardQ(img, orientation, card) {
  return toQ(img, orientation, card.imageSize, card.colorConstancy, card.contractVersion);
}

/** Step 4 in the model's input type: q as is (uint8), shifted (int8) or scaled to float32 ((q - 128) / 128). */
export function encodeInput(q, dtype) {
  if (dtype === "uint8") return Uint8Array.from(q);
  if (dtype === "int8") return Int8Array.from(q, (v) => v - 128);
  if (dtype === "float32") return Float32Array.from(q, (v) => f(f(v - 128) / 128));
  throw new RangeError(`input dtype ${dtype} is not supported`);
}
