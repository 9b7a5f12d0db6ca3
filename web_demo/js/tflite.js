// Just enough of the TFLite flatbuffer (schema.fbs: Model, SubGraph, Tensor, QuantizationParameters,
// SignatureDef) to check a model against its card before it runs, and to give a model that declares a dynamic
// batch (-1) the fixed batch of 1 LiteRT.js needs. LiteRT.js reports only signature names, dtypes and shapes;
// the card promises tensor names and quantization, which are read here. No DOM: browser and Node.

const TYPES = { 0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
  7: "int16", 8: "complex64", 9: "int8", 10: "float64" };

/** A model file the page cannot read: the message is one sentence for a person. */
export class ModelError extends Error {}

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  check(pos, n) {
    if (!(pos >= 0 && pos + n <= this.b.length)) throw new ModelError("the model file is damaged (not a TFLite flatbuffer).");
  }

  u32(pos) { this.check(pos, 4); return this.v.getUint32(pos, true); }
  i32(pos) { this.check(pos, 4); return this.v.getInt32(pos, true); }

  /** Position of table field ``id`` (its slot in the vtable), or 0 if absent. */
  field(table, id) {
    const vtable = table - this.i32(table);
    this.check(vtable, 4);
    const vsize = this.v.getUint16(vtable, true);
    const slot = 4 + 2 * id;
    if (slot + 2 > vsize) return 0;
    const off = this.v.getUint16(vtable + slot, true);
    return off === 0 ? 0 : table + off;
  }

  deref(pos) { return pos + this.u32(pos); }

  table(table, id) { const p = this.field(table, id); return p ? this.deref(p) : 0; }

  /** Element positions of a vector field (tables and strings: dereferenced; scalars: their positions). */
  vector(table, id, size = 4, indirect = true) {
    const p = this.field(table, id);
    if (!p) return [];
    const start = this.deref(p);
    const n = this.u32(start);
    this.check(start + 4, n * size);
    return Array.from({ length: n }, (_, i) => (indirect ? this.deref(start + 4 + i * size) : start + 4 + i * size));
  }

  string(table, id) {
    const p = this.field(table, id);
    if (!p) return null;
    const s = this.deref(p);
    const n = this.u32(s);
    this.check(s + 4, n);
    return new TextDecoder().decode(this.b.subarray(s + 4, s + 4 + n));
  }

  ints(table, id) { return this.vector(table, id, 4, false).map((p) => this.i32(p)); }
}

function root(bytes) {
  const r = new Reader(bytes);
  if (bytes.length < 8 || String.fromCharCode(...bytes.subarray(4, 8)) !== "TFL3") {
    throw new ModelError("the model file is not a TFLite model.");
  }
  return [r, r.deref(0)];
}

function tensor(r, t) {
  const q = r.table(t, 4);
  const scales = q ? r.vector(q, 2, 4, false).map((p) => r.v.getFloat32(p, true)) : [];
  const zeros = q ? r.vector(q, 3, 8, false).map((p) => Number(r.v.getBigInt64(p, true))) : [];
  const typeAt = r.field(t, 1);
  return {
    name: r.string(t, 3), shape: r.ints(t, 0), shapeSignature: r.ints(t, 7),
    dtype: TYPES[typeAt ? r.b[typeAt] : 0] || "unknown",
    quantization: scales.length ? { scale: scales[0], zeroPoint: zeros[0] || 0, channels: scales.length } : null,
  };
}

/**
 * The main subgraph's inputs and outputs as the interpreter sees them (name, shape, dtype, quantization) and
 * the default signature's names for them: {inputs, outputs, signature: {inputs: {name: tensor}, outputs}}.
 */
export function modelIo(bytes) {
  const [r, model] = root(bytes);
  const subgraphs = r.vector(model, 2);
  if (!subgraphs.length) throw new ModelError("the model file holds no graph.");
  const sg = subgraphs[0];
  const tensors = r.vector(sg, 0);
  const at = (i) => {
    if (!(i >= 0 && i < tensors.length)) throw new ModelError("the model file is damaged (a tensor index is out of range).");
    return tensor(r, tensors[i]);
  };
  const io = { inputs: r.ints(sg, 1).map(at), outputs: r.ints(sg, 2).map(at), signature: null };
  const sigs = r.vector(model, 7);
  if (sigs.length) {
    const map = (id) => Object.fromEntries(r.vector(sigs[0], id).map((m) => {
      const idx = r.field(m, 1);
      return [r.string(m, 0), at(idx ? r.u32(idx) : 0).name];
    }));
    io.signature = { key: r.string(sigs[0], 2), inputs: map(0), outputs: map(1) };
  }
  return io;
}

/**
 * A copy of the model with every tensor's dynamic batch (shape_signature[0] == -1) fixed to 1, in place (the
 * flatbuffer keeps its size; only those int32s change), and how many were changed. LiteRT.js refuses a
 * [1, S, S, 3] input tensor for a model that declares [-1, S, S, 3] and offers no call to resize; the
 * interpreter's own shapes are already batch 1, so the model computes exactly what it did.
 */
export function fixBatch(bytes) {
  const out = Uint8Array.from(bytes);
  const [r, model] = root(out);
  let changed = 0;
  for (const sg of r.vector(model, 2)) {
    for (const t of r.vector(sg, 0)) {
      const sig = r.vector(t, 7, 4, false);
      if (sig.length && r.i32(sig[0]) === -1) {
        r.v.setInt32(sig[0], 1, true);
        changed++;
      }
    }
  }
  return { bytes: out, changed };
}
