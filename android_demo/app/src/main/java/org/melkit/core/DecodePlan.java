package org.melkit.core;

import java.util.Locale;

/**
 * How large to decode a photo, decided from its header alone (the app reads width, height and format with
 * {@code BitmapFactory.Options.inJustDecodeBounds}, then decodes with {@link #sampleSize} as
 * {@code inSampleSize}): a 12-MP photo is never decoded to a full-size {@code int[]}.
 *
 * <p>First what {@code melkit predict} decodes ({@code melkit/data/imageio.read_rgb}): for a v2 card a JPEG is
 * decoded already reduced by libjpeg's DCT scaling (Pillow's draft mode), by the largest of 8, 4, 2 that
 * keeps the short side, {@code ceil(short / s)}, at least {@code 2 * image_size}; otherwise (v1 cards, every
 * other format) in full. {@link #pythonScale} and {@link #pythonWidth} x {@link #pythonHeight} are that.
 * Python refuses an image whose decode would exceed {@link #PYTHON_MAX_PIXELS}; so does this plan, with the
 * same message, so the phone never answers for an image melkit predict would not take.
 *
 * <p>On Android 7.0+ (the app's minSdk 24) BitmapFactory decodes a JPEG at {@code inSampleSize} 2, 4 or 8
 * with libjpeg-turbo's DCT scaling too, to {@code ceil(w / n) x ceil(h / n)}: so when Python's decode
 * fits in {@link #MAX_DECODE_PIXELS} the phone decodes at Python's scale and gets Python's size
 * ({@link #asPython}), and the contract's box step then reduces both the same way.
 *
 * <p>When it does not fit (a v1 card with a large JPEG, or a large PNG, WebP or HEIF, which Python decodes
 * in full or cannot read at all) the phone takes the smallest power-of-two sample that fits instead and
 * says that this is not the decode melkit predict does ({@code asPython == false}); the app shows that
 * beside the result. Non-JPEG formats have no DCT scaling: Android keeps one pixel per {@code n x n} block,
 * {@code floor(w / n)} wide, which the bound is computed on as well.
 */
public final class DecodePlan {
    /** The reductions libjpeg's DCT scaling gives (Pillow's draft mode, BitmapFactory's JPEG inSampleSize). */
    static final int[] JPEG_DRAFT_SCALES = {8, 4, 2};
    /** {@code melkit.data.imageio.MAX_PIXELS}: Python refuses to decode more pixels than this for one image. */
    public static final long PYTHON_MAX_PIXELS = 50000000L;
    /**
     * The most pixels the app decodes one photo to: 8 Mpx, 32 MB as the ARGB {@code int[]} the core reads
     * (and as much again in the Bitmap it comes from). Far above what the contract needs: a v2 card of size
     * 224 box-filters from a short side of 448, whatever the photo's resolution.
     */
    public static final long MAX_DECODE_PIXELS = 8000000L;

    /** BitmapFactory's {@code inSampleSize}: 1, 2, 4, 8, ... */
    public final int sampleSize;
    /** The decoded size the phone gets with {@link #sampleSize} (stored orientation, before EXIF). */
    public final int width;
    public final int height;
    /** What melkit predict decodes: its draft scale and size. */
    public final int pythonScale;
    public final int pythonWidth;
    public final int pythonHeight;
    /** True when the phone decodes at Python's scale to Python's size (JPEG pixels may still differ). */
    public final boolean asPython;

    private DecodePlan(int sampleSize, int width, int height, int pythonScale, int pythonWidth, int pythonHeight) {
        this.sampleSize = sampleSize;
        this.width = width;
        this.height = height;
        this.pythonScale = pythonScale;
        this.pythonWidth = pythonWidth;
        this.pythonHeight = pythonHeight;
        this.asPython = sampleSize == pythonScale;
    }

    /** The plan for a photo a card's model will take; {@code mimeType} as BitmapFactory reports it. */
    public static DecodePlan forCard(int width, int height, String mimeType, ModelCard card) {
        return of(width, height, isJpeg(mimeType), card.imageSize, card.contractVersion);
    }

    /** Formats decoded with DCT scaling: JPEG, and MPO (a phone's multi-picture JPEG), which Android calls JPEG. */
    public static boolean isJpeg(String mimeType) {
        return "image/jpeg".equalsIgnoreCase(mimeType) || "image/jpg".equalsIgnoreCase(mimeType);
    }

    /**
     * The plan for a {@code width x height} image (as stored) for a model of input size {@code imageSize}
     * under contract {@code contractVersion} (1 or 2).
     *
     * @throws IllegalArgumentException for a size that is no image, or one melkit predict refuses
     *     (over {@link #PYTHON_MAX_PIXELS} as Python would decode it), with the message to show
     */
    public static DecodePlan of(int width, int height, boolean jpeg, int imageSize, int contractVersion) {
        if (width < 1 || height < 1) {
            throw new IllegalArgumentException("not an image Android can decode (size " + width + "x" + height + ")");
        }
        if (imageSize < 1 || (contractVersion != 1 && contractVersion != 2)) {
            throw new IllegalArgumentException("no decode plan for size " + imageSize + ", contract v"
                    + contractVersion);
        }
        int ps = jpeg ? draftScale(width, height, minShortSide(imageSize, contractVersion)) : 1;
        int pw = ceilDiv(width, ps);
        int ph = ceilDiv(height, ps);
        long pythonPixels = (long) pw * ph;
        if (pythonPixels > PYTHON_MAX_PIXELS) {  // imageio.read_rgb's refusal, in its words
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%dx%d is %.1f Mpx, over melkit's limit of %d Mpx per image; downscale it first",
                    pw, ph, pythonPixels / 1e6, PYTHON_MAX_PIXELS / 1000000L));
        }
        if (pythonPixels <= MAX_DECODE_PIXELS) {
            return new DecodePlan(ps, pw, ph, ps, pw, ph);
        }
        // Bounded fallback: the smallest power of two past Python's scale whose decode fits. At most 8 for an
        // image Python decodes in full (w * h <= 50 Mpx gives ceil(w/8) * ceil(h/8) < 8 Mpx); more only for a
        // JPEG of over 512 Mpx.
        int n = 2 * ps;
        while ((long) sampled(width, n, jpeg) * sampled(height, n, jpeg) > MAX_DECODE_PIXELS) {
            n *= 2;
        }
        return new DecodePlan(n, sampled(width, n, jpeg), sampled(height, n, jpeg), ps, pw, ph);
    }

    /** {@code Contract.decode_min_short_side}: {@code 2 * size} for v2; 0 (no draft) for v1. */
    static int minShortSide(int imageSize, int contractVersion) {
        return contractVersion >= 2 ? 2 * imageSize : 0;
    }

    /**
     * {@code imageio.draft_scale}: the largest of 8, 4, 2 whose decoded short side {@code ceil(short / s)} is
     * still at least {@code minShortSide}; 1 if none is, or if {@code minShortSide} is 0.
     */
    static int draftScale(int width, int height, int minShortSide) {
        if (minShortSide <= 0) {
            return 1;
        }
        int shortSide = Math.min(width, height);
        for (int s : JPEG_DRAFT_SCALES) {
            if (ceilDiv(shortSide, s) >= minShortSide) {
                return s;
            }
        }
        return 1;
    }

    /**
     * One side decoded at {@code inSampleSize n}: JPEG by DCT scaling, {@code ceil(side / n)} (past 8, Android
     * scales by 8 and then keeps every (n/8)-th pixel: no more than that); other formats keep one pixel per
     * block, {@code floor(side / n)}, at least 1.
     */
    static int sampled(int side, int n, boolean jpeg) {
        return jpeg ? ceilDiv(side, n) : Math.max(1, side / n);
    }

    private static int ceilDiv(int a, int b) {
        return (int) (((long) a + b - 1) / b);
    }

    /** For the result screen: what was decoded, and whether it is the decode melkit predict does. */
    public String describe() {
        String got = width + "x" + height + (sampleSize > 1 ? " (1/" + sampleSize + ")" : "");
        if (asPython) {
            return "decoded " + got + ", as melkit predict";
        }
        return "decoded " + got + " to bound memory; melkit predict decodes " + pythonWidth + "x" + pythonHeight
                + ", so P(mel) may differ slightly";
    }

    @Override
    public String toString() {
        return "DecodePlan{sample " + sampleSize + " -> " + width + "x" + height + ", python " + pythonScale + " -> "
                + pythonWidth + "x" + pythonHeight + "}";
    }
}
