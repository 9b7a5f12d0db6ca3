// What the page knows about an image file before decoding any pixel: its format, stored width and height, and
// EXIF orientation. The pixel limit is checked on this, so a huge image is refused before the browser decodes
// it. The orientation reader mirrors the Java core's ExifReader (JPEG APP1, PNG eXIf, where Pillow finds it):
// anything malformed or absent reads as 1, as Pillow treats it. No DOM: runs in the browser and in Node.

/** melkit.data.imageio.MAX_PIXELS: melkit decodes no image of more pixels than this. */
export const MAX_PIXELS = 50_000_000;
export const FORMATS = ["JPEG", "PNG", "WebP", "GIF", "BMP"];

/** An image the page will not take: the message is one sentence for a person. */
export class ImageError extends Error {}

const u8 = (d, i) => d[i];
const u16 = (d, i, little) => (little ? d[i] | (d[i + 1] << 8) : (d[i] << 8) | d[i + 1]);
const u32 = (d, i, little) => (little ? u16(d, i, true) + u16(d, i + 2, true) * 65536
  : u16(d, i, false) * 65536 + u16(d, i + 2, false));
const ascii = (d, i, n) => String.fromCharCode(...d.subarray(i, i + n));

/** The orientation tag (1-8) in a TIFF structure at [start, end) of d; 1 if absent or malformed. */
function fromTiff(d, start, end) {
  if (end - start < 8) return 1;
  let little;
  if (d[start] === 0x49 && d[start + 1] === 0x49) little = true;
  else if (d[start] === 0x4d && d[start + 1] === 0x4d) little = false;
  else return 1;
  if (u16(d, start + 2, little) !== 42) return 1;
  const ifd = start + u32(d, start + 4, little);
  if (ifd + 2 > end) return 1;
  const count = u16(d, ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > end) return 1;
    if (u16(d, entry, little) === 0x0112) {
      const type = u16(d, entry + 2, little);
      const value = type === 3 ? u16(d, entry + 8, little) : type === 4 ? u32(d, entry + 8, little) : 1;
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

/** JPEG: the frame's size (the first SOFn marker) and the orientation of the first Exif APP1, both before the
 * scan (ExifReader.fromJpeg's walk over the markers); null without a frame header. */
function jpegHeader(d) {
  let pos = 2;
  let orientation = null;
  let size = null;
  let scan = -1;
  while (pos + 4 <= d.length && u8(d, pos) === 0xff) {
    const marker = u8(d, pos + 1);
    if (marker === 0xff) { pos++; continue; }  // fill byte before a marker
    if (marker === 0xd9 || marker === 0xda) { scan = pos; break; }  // end of image, start of scan: no metadata after
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { pos += 2; continue; }  // no length
    const len = u16(d, pos + 2, false);
    if (len < 2 || pos + 2 + len > d.length) break;
    if (orientation === null && marker === 0xe1 && len >= 8 && ascii(d, pos + 4, 4) === "Exif" &&
        d[pos + 8] === 0 && d[pos + 9] === 0) {
      orientation = fromTiff(d, pos + 10, pos + 2 + len);
    }
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof && size === null && len >= 7) size = { width: u16(d, pos + 7, false), height: u16(d, pos + 5, false) };
    pos += 2 + len;
  }
  // In the entropy-coded data 0xFF is always followed by 0x00 or a restart marker: 0xFFD9 after the scan's
  // start is the end of the image, missing in a file cut short (which Pillow, and so melkit, refuses).
  let complete = false;
  for (let i = d.length - 2; i > scan && scan >= 0; i--) {
    if (d[i] === 0xff && d[i + 1] === 0xd9) { complete = true; break; }
  }
  return size === null ? null : { format: "JPEG", ...size, orientation: orientation || 1, complete };
}

/** PNG: IHDR's size and the orientation of an eXIf chunk before the image data. */
function png(d) {
  if (d.length < 24 || ascii(d, 12, 4) !== "IHDR") return null;
  const width = u32(d, 16, false);
  const height = u32(d, 20, false);
  let orientation = 1;
  let pos = 8;
  while (pos + 12 <= d.length) {
    const len = u32(d, pos, false);
    if (pos + 12 + len > d.length) break;
    const type = ascii(d, pos + 4, 4);
    if (type === "eXIf") { orientation = fromTiff(d, pos + 8, pos + 8 + len); break; }
    if (type === "IDAT" || type === "IEND") break;
    pos += 12 + len;
  }
  let complete = false;  // the IEND chunk, last in every whole PNG (a few trailing bytes allowed)
  for (let i = d.length - 8; i >= Math.max(8, d.length - 64); i--) {
    if (ascii(d, i, 4) === "IEND") { complete = true; break; }
  }
  return { format: "PNG", width, height, orientation, complete };
}

function webp(d) {
  if (d.length < 30) return null;
  const chunk = ascii(d, 12, 4);
  if (chunk === "VP8X") {
    const w = 1 + (d[24] | (d[25] << 8) | (d[26] << 16));
    const h = 1 + (d[27] | (d[28] << 8) | (d[29] << 16));
    return { format: "WebP", width: w, height: h, orientation: 1 };
  }
  if (chunk === "VP8 ") {
    return { format: "WebP", width: u16(d, 26, true) & 0x3fff, height: u16(d, 28, true) & 0x3fff, orientation: 1 };
  }
  if (chunk === "VP8L" && d[20] === 0x2f) {
    const b = d[21] | (d[22] << 8) | (d[23] << 16) | (d[24] * 16777216);
    return { format: "WebP", width: 1 + (b & 0x3fff), height: 1 + ((b >>> 14) & 0x3fff), orientation: 1 };
  }
  return null;
}

/** The EXIF orientation alone (ExifReader.orientation): 1 for anything but a JPEG or PNG that states one. */
export function exifOrientation(bytes) {
  const d = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (d.length < 12) return 1;
  if (d[0] === 0xff && d[1] === 0xd8) {
    const h = jpegHeader(d);
    return h ? h.orientation : 1;
  }
  if (d[0] === 0x89 && ascii(d, 1, 3) === "PNG") {
    const h = png(d);
    return h ? h.orientation : 1;
  }
  return 1;
}

/**
 * {format, width, height, orientation} from the file's first bytes; ImageError (one sentence) for a file the
 * page does not take: not an image, a format browsers and melkit do not both read, a header without a size,
 * or more than MAX_PIXELS pixels (refused here, before anything is decoded).
 */
export function readHeader(bytes, name = "the file") {
  const d = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let h = null;
  if (d.length >= 12 && d[0] === 0xff && d[1] === 0xd8 && d[2] === 0xff) h = jpegHeader(d);
  else if (d.length >= 8 && d[0] === 0x89 && ascii(d, 1, 3) === "PNG") h = png(d);
  else if (d.length >= 12 && ascii(d, 0, 4) === "RIFF" && ascii(d, 8, 4) === "WEBP") h = webp(d);
  else if (d.length >= 10 && (ascii(d, 0, 6) === "GIF87a" || ascii(d, 0, 6) === "GIF89a")) {
    h = { format: "GIF", width: u16(d, 6, true), height: u16(d, 8, true), orientation: 1 };
  } else if (d.length >= 26 && ascii(d, 0, 2) === "BM") {
    const height = u32(d, 22, true);
    h = { format: "BMP", width: u32(d, 18, true), height: height >= 2 ** 31 ? 2 ** 32 - height : height,
      orientation: 1 };
  } else {
    throw new ImageError(`${name} is not an image this page reads (${FORMATS.join(", ")}).`);
  }
  if (h === null || !(h.width > 0 && h.height > 0)) {
    throw new ImageError(`${name} is damaged or incomplete: its ${h ? h.format : "image"} header states no size.`);
  }
  const mpx = h.width * h.height;
  if (mpx > MAX_PIXELS) {
    throw new ImageError(`${name} is ${h.width}x${h.height} (${(mpx / 1e6).toFixed(1)} Mpx), over melkit's limit ` +
      `of ${MAX_PIXELS / 1e6} Mpx per image; downscale it first.`);
  }
  if (h.width < 2 || h.height < 2) throw new ImageError(`${name} is too small (${h.width}x${h.height}).`);
  if (h.complete === false) {
    throw new ImageError(`${name} is damaged or incomplete: the ${h.format} file ends before its image does.`);
  }
  delete h.complete;
  return h;
}
