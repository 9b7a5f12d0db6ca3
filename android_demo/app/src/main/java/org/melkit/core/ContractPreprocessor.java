package org.melkit.core;

/**
 * The preprocessing contract ({@code melkit/data/preprocess.py}), bit for bit: ARGB pixels to the uint8
 * image {@code q}, then to the model's input bytes.
 *
 * <p>Every float operation below is the one numpy does, in the same order and in float32. Java never fuses
 * a multiply and an add, so the results are the same bits on the JVM, on ART and in numpy; the JVM tests
 * check this against Python's tensors byte for byte.
 */
public final class ContractPreprocessor {
    public static final float MEAN = 128f;
    public static final float STD = 128f;

    private ContractPreprocessor() {
    }

    /**
     * Resize to {@code size x size} (stretch, bilinear, half-pixel centres, float32), round half up and
     * clamp: the contract's {@code q} as {@code size * size * 3} bytes (unsigned values, RGB, row-major).
     *
     * @param argb stored pixels as {@code Bitmap.getPixels} gives them (non-premultiplied ARGB)
     * @param orientation EXIF orientation of the stored pixels (1 = upright)
     */
    public static byte[] resizeToQ(int[] argb, int width, int height, int orientation, int size) {
        if (width < 1 || height < 1 || argb.length < width * height || size < 1) {
            throw new IllegalArgumentException("bad image " + width + "x" + height + " for size " + size);
        }
        int w = ExifOrientation.uprightWidth(width, height, orientation);
        int h = ExifOrientation.uprightHeight(width, height, orientation);
        int[] y0 = new int[size];
        int[] y1 = new int[size];
        float[] fy = new float[size];
        int[] x0 = new int[size];
        int[] x1 = new int[size];
        float[] fx = new float[size];
        axisWeights(h, size, y0, y1, fy);
        axisWeights(w, size, x0, x1, fx);
        byte[] q = new byte[size * size * 3];
        float[] tl = new float[3];
        float[] tr = new float[3];
        float[] bl = new float[3];
        float[] br = new float[3];
        int o = 0;
        for (int i = 0; i < size; i++) {
            for (int j = 0; j < size; j++) {
                rgb(argb[ExifOrientation.sourceIndex(x0[j], y0[i], width, height, orientation)], tl);
                rgb(argb[ExifOrientation.sourceIndex(x1[j], y0[i], width, height, orientation)], tr);
                rgb(argb[ExifOrientation.sourceIndex(x0[j], y1[i], width, height, orientation)], bl);
                rgb(argb[ExifOrientation.sourceIndex(x1[j], y1[i], width, height, orientation)], br);
                for (int c = 0; c < 3; c++) {
                    // Horizontal on both rows, then vertical, exactly as preprocess.resize_uint8.
                    float top = tl[c] + (tr[c] - tl[c]) * fx[j];
                    float bottom = bl[c] + (br[c] - bl[c]) * fx[j];
                    float value = top + (bottom - top) * fy[i];
                    float r = (float) Math.floor(value + 0.5f);
                    int v = r < 0f ? 0 : r > 255f ? 255 : (int) r;
                    q[o++] = (byte) v;
                }
            }
        }
        return q;
    }

    /** TensorFlow's half-pixel scaler in float32: source indices and fractions along one axis. */
    static void axisWeights(int in, int out, int[] lo, int[] hi, float[] frac) {
        float scale = (float) in / (float) out;
        for (int i = 0; i < out; i++) {
            float center = ((float) i + 0.5f) * scale - 0.5f;
            float floor = (float) Math.floor(center);
            lo[i] = (int) Math.max(floor, 0f);
            hi[i] = (int) Math.min((float) Math.ceil(center), (float) (in - 1));
            frac[i] = center - floor;
        }
    }

    /** One pixel's RGB as floats; transparent pixels composited over black the way Pillow does it. */
    static void rgb(int argb, float[] out) {
        int a = argb >>> 24;
        int r = argb >> 16 & 0xFF;
        int g = argb >> 8 & 0xFF;
        int b = argb & 0xFF;
        if (a != 255) {
            r = overBlack(r, a);
            g = overBlack(g, a);
            b = overBlack(b, a);
        }
        out[0] = r;
        out[1] = g;
        out[2] = b;
    }

    /**
     * Pillow's integer alpha_composite of (c, a) over opaque black, as read_rgb does for transparent images:
     * coefficient a * 128 (7 precision bits), a rounded division by 255 done with shifts.
     */
    static int overBlack(int c, int a) {
        if (a == 0) {
            return 0;
        }
        int tmp = c * (a * 128) + (0x80 << 7);
        return (((tmp >> 8) + tmp) >> 8) >> 7;
    }

    /** The contract's step 4 in the model's input type: {@code q} as is (uint8), shifted (int8) or scaled. */
    public static byte[] encodeInput(byte[] q, TensorSpec input) {
        if (q.length != input.elements()) {
            throw new IllegalArgumentException(q.length + " values for input " + input);
        }
        if (input.dtype.equals("uint8")) {
            return q.clone();
        }
        if (input.dtype.equals("int8")) {
            byte[] out = new byte[q.length];
            for (int i = 0; i < q.length; i++) {
                out[i] = (byte) ((q[i] & 0xFF) - 128);
            }
            return out;
        }
        byte[] out = new byte[q.length * 4];  // float32, little-endian like LiteRT's native-order buffers
        for (int i = 0; i < q.length; i++) {
            int bits = Float.floatToRawIntBits(((float) (q[i] & 0xFF) - MEAN) / STD);
            out[4 * i] = (byte) bits;
            out[4 * i + 1] = (byte) (bits >> 8);
            out[4 * i + 2] = (byte) (bits >> 16);
            out[4 * i + 3] = (byte) (bits >> 24);
        }
        return out;
    }
}
