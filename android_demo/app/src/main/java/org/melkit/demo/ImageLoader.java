package org.melkit.demo;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;

import android.content.ContentResolver;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;

import org.melkit.core.DecodePlan;
import org.melkit.core.ExifReader;
import org.melkit.core.ModelCard;

/**
 * Reads a picked or captured image into what the core takes: ARGB pixels as stored plus the EXIF tag,
 * decoded no larger than {@link DecodePlan} allows (a 12-MP photo never becomes a full-size {@code int[]}).
 */
final class ImageLoader {
    /** The largest file read into memory (a photo is a few MB; this only stops a runaway file early). */
    static final long MAX_FILE_BYTES = 200L << 20;
    /** The preview's long side is at least this (then halved no further), for a 240 dp high view. */
    static final int PREVIEW_LONG_SIDE = 512;

    static final class Loaded {
        int[] argb;
        int width;
        int height;
        int orientation;
        Bitmap preview;
        /** How it was decoded, for the result screen (DecodePlan.describe, or a size Android did not plan). */
        String decodeNote;
    }

    private ImageLoader() {
    }

    static Loaded load(ContentResolver resolver, Uri uri, ModelCard card) throws IOException {
        byte[] data = readAll(resolver, uri);
        Loaded out = new Loaded();
        out.orientation = ExifReader.orientation(data);
        // The header only: size and format, no pixels.
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        BitmapFactory.decodeByteArray(data, 0, data.length, bounds);
        if (bounds.outWidth < 1 || bounds.outHeight < 1) {
            throw new IOException("not an image Android can decode");
        }
        DecodePlan plan;
        try {
            plan = DecodePlan.forCard(bounds.outWidth, bounds.outHeight, bounds.outMimeType, card);
        } catch (IllegalArgumentException e) {  // over melkit's pixel limit: the same refusal as melkit predict
            throw new IOException(e.getMessage());
        }
        // Not premultiplied: premultiplied storage would round away colour in transparent pixels before the
        // core composites them. inSampleSize: JPEG by libjpeg's DCT scaling, as Pillow's draft mode.
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inPremultiplied = false;
        o.inSampleSize = plan.sampleSize;
        Bitmap decoded = BitmapFactory.decodeByteArray(data, 0, data.length, o);
        if (decoded == null) {
            throw new IOException("not an image Android can decode");
        }
        out.width = decoded.getWidth();
        out.height = decoded.getHeight();
        out.decodeNote = out.width == plan.width && out.height == plan.height ? plan.describe()
                : "decoded " + out.width + "x" + out.height + " where " + plan + " was planned; P(mel) may differ "
                + "from melkit predict's";
        if ((long) out.width * out.height > DecodePlan.MAX_DECODE_PIXELS) {  // a decoder that ignored the sample
            decoded.recycle();
            throw new IOException("Android decoded " + out.width + "x" + out.height + ", over the app's bound");
        }
        out.argb = new int[out.width * out.height];
        decoded.getPixels(out.argb, 0, out.width, 0, 0, out.width, out.height);
        decoded.recycle();
        // A small separate bitmap for the screen (a non-premultiplied one cannot be drawn).
        BitmapFactory.Options p = new BitmapFactory.Options();
        p.inSampleSize = previewSampleSize(bounds.outWidth, bounds.outHeight);
        out.preview = BitmapFactory.decodeByteArray(data, 0, data.length, p);
        return out;
    }

    /** The largest power of two that keeps the preview's long side at least {@link #PREVIEW_LONG_SIDE}. */
    static int previewSampleSize(int width, int height) {
        int n = 1;
        while (Math.max(width, height) / (2 * n) >= PREVIEW_LONG_SIDE) {
            n *= 2;
        }
        return n;
    }

    private static byte[] readAll(ContentResolver resolver, Uri uri) throws IOException {
        InputStream in = resolver.openInputStream(uri);
        if (in == null) {
            throw new IOException("cannot open " + uri);
        }
        try {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[1 << 16];
            int n;
            while ((n = in.read(chunk)) > 0) {
                buf.write(chunk, 0, n);
                if (buf.size() > MAX_FILE_BYTES) {
                    throw new IOException("the file is over " + (MAX_FILE_BYTES >> 20) + " MB; downscale it first");
                }
            }
            return buf.toByteArray();
        } finally {
            in.close();
        }
    }
}
