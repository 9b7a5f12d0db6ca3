package org.melkit.core;

import java.util.Arrays;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/** A model input or output as the card describes it: dtype, shape and (for integer tensors) quantization. */
public final class TensorSpec {
    public final String dtype;
    public final int[] shape;
    /** 0 when the tensor is not quantized. */
    public final double scale;
    public final int zeroPoint;

    public TensorSpec(String dtype, int[] shape, double scale, int zeroPoint) {
        if (!dtype.equals("uint8") && !dtype.equals("int8") && !dtype.equals("float32")) {
            throw new IllegalArgumentException("unsupported tensor type " + dtype);
        }
        if (!dtype.equals("float32") && !(scale > 0)) {
            throw new IllegalArgumentException(dtype + " tensor without quantization");
        }
        this.dtype = dtype;
        this.shape = shape.clone();
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /** The card's {@code where} ("input" or "output") object; every field the card format requires is read. */
    static TensorSpec fromJson(JSONObject o, String where) throws JSONException {
        ModelCard.string(o, where, "name");
        JSONArray s = ModelCard.array(o, where, "shape");
        int[] shape = new int[s.length()];
        for (int i = 0; i < shape.length; i++) {
            if (!ModelCard.isInteger(s.get(i))) {
                throw new IllegalArgumentException("model card field '" + where + ".shape[" + i
                        + "]' must be an integer");
            }
            shape[i] = s.getInt(i);
        }
        String dtype = ModelCard.string(o, where, "dtype");
        double scale = 0;
        int zero = 0;
        JSONObject q = ModelCard.objectOrNull(o, where, "quantization");
        if (q != null) {
            scale = ModelCard.number(q, where + ".quantization", "scale");
            zero = (int) ModelCard.integer(q, where + ".quantization", "zero_point");
        }
        return new TensorSpec(dtype, shape, scale, zero);
    }

    public int elements() {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    public int bytesPerElement() {
        return dtype.equals("float32") ? 4 : 1;
    }

    public int numBytes() {
        return elements() * bytesPerElement();
    }

    @Override
    public String toString() {
        return dtype + Arrays.toString(shape);
    }
}
