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

    static TensorSpec fromJson(JSONObject o) throws JSONException {
        JSONArray s = o.getJSONArray("shape");
        int[] shape = new int[s.length()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = s.getInt(i);
        }
        double scale = 0;
        int zero = 0;
        if (!o.isNull("quantization")) {
            JSONObject q = o.getJSONObject("quantization");
            scale = q.getDouble("scale");
            zero = q.getInt("zero_point");
        }
        return new TensorSpec(o.getString("dtype"), shape, scale, zero);
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
