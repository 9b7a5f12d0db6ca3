package org.melkit.core;

/**
 * The preprocessing contracts v1 and v2 ({@code melkit/data/contract.py}), bit for bit: ARGB pixels to the
 * uint8 image {@code q}, then to the model's input bytes.
 *
 * <p>Every float operation below is the one numpy does, in the same order and in float32. Java never fuses
 * a multiply and an add, so the results are the same bits on the JVM, on ART and in numpy; the JVM tests
 * check this against Python's tensors byte for byte.
 */
public final class ContractPreprocessor {
    public static final float MEAN = 128f;
    public static final float STD = 128f;

    /** The one optional colour-constancy step 3b this core implements (a card's preprocessing.color_constancy). */
    public static final String SHADES_OF_GRAY = "shades_of_gray:p=6";
    static final int SHADES_OF_GRAY_P = 6;

    private ContractPreprocessor() {
    }

    /**
     * Steps 2-3, 2a for a v2 card and, when {@code card} says so, 3b: the {@code q} the card's model takes.
     * The one entry point for the app and the golden tests, so a card's steps cannot be left out.
     */
    public static byte[] toQ(int[] argb, int width, int height, int orientation, ModelCard card) {
        return toQ(argb, width, height, orientation, card.imageSize, card.colorConstancy, card.contractVersion);
    }

    /** Contract v1: {@link #resizeToQ}, then step 3b if {@code colorConstancy} is {@link #SHADES_OF_GRAY}. */
    public static byte[] toQ(int[] argb, int width, int height, int orientation, int size, String colorConstancy) {
        return toQ(argb, width, height, orientation, size, colorConstancy, 1);
    }

    /**
     * Contract {@code version} (1 or 2): for v2, step 2a ({@link #boxReduce}) when the upright image's short
     * side is more than {@code 2 * size}; then {@link #resizeToQ} and step 3b if {@code colorConstancy} is
     * {@link #SHADES_OF_GRAY} (null: none).
     */
    public static byte[] toQ(int[] argb, int width, int height, int orientation, int size, String colorConstancy,
                             int version) {
        if (colorConstancy != null && !SHADES_OF_GRAY.equals(colorConstancy)) {
            throw new IllegalArgumentException("color_constancy " + colorConstancy + " is not implemented");
        }
        if (version != 1 && version != 2) {
            throw new IllegalArgumentException("contract version " + version + " is not implemented");
        }
        byte[] q;
        int k = boxFactor(ExifOrientation.uprightWidth(width, height, orientation),
                ExifOrientation.uprightHeight(width, height, orientation), size);
        if (version == 2 && k > 1) {
            int[] dims = new int[2];
            int[] boxed = boxReduce(argb, width, height, orientation, k, dims);
            q = resizeToQ(boxed, dims[0], dims[1], 1, size);
        } else {
            q = resizeToQ(argb, width, height, orientation, size);
        }
        return colorConstancy == null ? q : shadesOfGray(q, SHADES_OF_GRAY_P);
    }

    /** Step 2a's k: {@code shortSide / size} when the short side is more than {@code 2 * size}, else 1. */
    public static int boxFactor(int width, int height, int size) {
        int shortSide = Math.min(width, height);
        return shortSide > 2 * size ? shortSide / size : 1;
    }

    /**
     * Step 2a (contract v2), as {@code preprocess.box_reduce}: the upright image reduced by {@code k} x
     * {@code k} block means, each channel {@code (sum + k*k/2) / (k*k)} in integers (round half up); the last
     * {@code h % k} rows and {@code w % k} columns of the upright image are dropped. Blocks are read through
     * the EXIF mapping, so the stored photo is never copied upright. Transparent pixels are composited over
     * black first, as read_rgb does.
     *
     * @param dims receives the result's width and height
     * @return the reduced upright image, opaque ARGB, row-major
     */
    public static int[] boxReduce(int[] argb, int width, int height, int orientation, int k, int[] dims) {
        int w = ExifOrientation.uprightWidth(width, height, orientation);
        int h = ExifOrientation.uprightHeight(width, height, orientation);
        if (k < 1 || width < 1 || height < 1 || argb.length < width * height) {
            throw new IllegalArgumentException("bad image " + width + "x" + height + " for box " + k);
        }
        int bw = w / k;
        int bh = h / k;
        long n = (long) k * k;
        long half = n / 2;
        long[] sums = new long[bw * 3];
        int[] out = new int[bw * bh];
        for (int by = 0; by < bh; by++) {
            java.util.Arrays.fill(sums, 0L);
            for (int y = by * k; y < by * k + k; y++) {
                int x = 0;
                for (int bx = 0; bx < bw; bx++) {
                    long r = 0;
                    long g = 0;
                    long b = 0;
                    for (int end = x + k; x < end; x++) {
                        int c = overBlack(argb[ExifOrientation.sourceIndex(x, y, width, height, orientation)]);
                        r += c >> 16 & 0xFF;
                        g += c >> 8 & 0xFF;
                        b += c & 0xFF;
                    }
                    sums[3 * bx] += r;
                    sums[3 * bx + 1] += g;
                    sums[3 * bx + 2] += b;
                }
            }
            for (int bx = 0; bx < bw; bx++) {
                int r = (int) ((sums[3 * bx] + half) / n);
                int g = (int) ((sums[3 * bx + 1] + half) / n);
                int b = (int) ((sums[3 * bx + 2] + half) / n);
                out[by * bw + bx] = 0xFF000000 | r << 16 | g << 8 | b;
            }
        }
        dims[0] = bw;
        dims[1] = bh;
        return out;
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

    /** One pixel as opaque RGB (0xRRGGBB); transparent pixels composited over black the way Pillow does it. */
    static int overBlack(int argb) {
        int a = argb >>> 24;
        if (a == 255) {
            return argb & 0xFFFFFF;
        }
        return overBlack(argb >> 16 & 0xFF, a) << 16 | overBlack(argb >> 8 & 0xFF, a) << 8 | overBlack(argb & 0xFF, a);
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

    /**
     * Step 3b, Shades of Gray colour constancy on {@code q} (RGB bytes, any number of pixels), as
     * {@code preprocess.shades_of_gray} computes it in float64, operation by operation and in the same order:
     * the per-channel histogram, {@code S_c} = the sum over v = 0..255 in that order of {@code count * v^p}
     * ({@code v^p} exact), {@code m_c = S_c / pixels}, the p-th root by {@link #root}, {@code grey = (e_R +
     * e_G + e_B) / 3}, {@code gain_c = grey / e_c}, {@code lut_c[v] = min(255, floor(v * gain_c + 0.5))}.
     * A channel that is all zero leaves the image unchanged. Returns a new array.
     */
    public static byte[] shadesOfGray(byte[] q, int p) {
        double[] e = illuminant(q, p);
        if (Math.min(e[0], Math.min(e[1], e[2])) == 0.0) {
            return q.clone();
        }
        double grey = (e[0] + e[1] + e[2]) / 3.0;
        byte[][] lut = new byte[3][256];
        for (int c = 0; c < 3; c++) {
            double gain = grey / e[c];
            for (int v = 0; v < 256; v++) {
                double r = Math.floor((double) v * gain + 0.5);
                lut[c][v] = (byte) (r > 255.0 ? 255 : (int) r);
            }
        }
        byte[] out = new byte[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = lut[i % 3][q[i] & 0xFF];
        }
        return out;
    }

    /** The illuminant estimate {@code e_c} (the Minkowski p-mean of each channel) that step 3b divides out. */
    static double[] illuminant(byte[] q, int p) {
        if (q.length == 0 || q.length % 3 != 0) {
            throw new IllegalArgumentException(q.length + " bytes are not RGB pixels");
        }
        if (p < 1 || p > 6) {
            throw new IllegalArgumentException("p must be 1..6 (v^p exact in double), got " + p);
        }
        long[][] counts = new long[3][256];
        for (int i = 0; i < q.length; i++) {
            counts[i % 3][q[i] & 0xFF]++;
        }
        double n = (double) (q.length / 3);
        double[] e = new double[3];
        for (int c = 0; c < 3; c++) {
            double sum = 0.0;
            for (int v = 0; v < 256; v++) {
                double power = v;
                for (int k = 1; k < p; k++) {
                    power = power * v;
                }
                sum = sum + (double) counts[c][v] * power;
            }
            e[c] = root(sum / n, p);
        }
        return e;
    }

    /** The p-th root of {@code m} in [0, 256) by 64 bisection steps, as {@code preprocess._root}. */
    static double root(double m, int p) {
        double lo = 0.0;
        double hi = 256.0;
        for (int i = 0; i < 64; i++) {
            double mid = (lo + hi) * 0.5;
            double t = mid;
            for (int k = 1; k < p; k++) {
                t = t * mid;
            }
            if (t <= m) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return lo;
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
