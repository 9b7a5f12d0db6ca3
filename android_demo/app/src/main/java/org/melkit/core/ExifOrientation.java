package org.melkit.core;

/**
 * EXIF orientation (tag 0x0112, values 1-8) as a mapping from upright pixel coordinates to stored ones.
 *
 * <p>Android's BitmapFactory ignores the tag while Python's contract (Pillow's {@code exif_transpose})
 * applies it, so the core applies it itself. The mapping is used in place by the resize, which avoids a
 * second full-size copy of a phone photo; {@link #apply} makes the copy explicitly (and is tested against
 * Pillow's results in the goldens).
 */
public final class ExifOrientation {
    private ExifOrientation() {
    }

    /** Orientations 5-8 swap width and height. */
    public static boolean swapsAxes(int orientation) {
        return orientation >= 5 && orientation <= 8;
    }

    public static int uprightWidth(int width, int height, int orientation) {
        return swapsAxes(orientation) ? height : width;
    }

    public static int uprightHeight(int width, int height, int orientation) {
        return swapsAxes(orientation) ? width : height;
    }

    /** Index into the stored {@code width x height} array of the upright pixel (x, y). */
    public static int sourceIndex(int x, int y, int width, int height, int orientation) {
        int sx;
        int sy;
        switch (orientation) {
            case 2: sx = width - 1 - x; sy = y; break;                  // mirrored
            case 3: sx = width - 1 - x; sy = height - 1 - y; break;     // rotated 180
            case 4: sx = x; sy = height - 1 - y; break;                 // flipped vertically
            case 5: sx = y; sy = x; break;                              // transposed
            case 6: sx = y; sy = height - 1 - x; break;                 // needs 90 degrees clockwise
            case 7: sx = width - 1 - y; sy = height - 1 - x; break;     // transverse
            case 8: sx = width - 1 - y; sy = x; break;                  // needs 90 degrees counter-clockwise
            default: sx = x; sy = y; break;                             // 1 and unknown values: as stored
        }
        return sy * width + sx;
    }

    /** The upright image as a new array; {@code size[0]}, {@code size[1]} receive its width and height. */
    public static int[] apply(int[] argb, int width, int height, int orientation, int[] size) {
        int w = uprightWidth(width, height, orientation);
        int h = uprightHeight(width, height, orientation);
        int[] out = new int[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                out[y * w + x] = argb[sourceIndex(x, y, width, height, orientation)];
            }
        }
        size[0] = w;
        size[1] = h;
        return out;
    }
}
