package org.melkit.demo;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;

import android.content.ContentResolver;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;

import org.melkit.core.ExifReader;

/** Reads a picked or captured image into what the core takes: ARGB pixels as stored plus the EXIF tag. */
final class ImageLoader {
    static final class Loaded {
        int[] argb;
        int width;
        int height;
        int orientation;
        Bitmap preview;
    }

    private ImageLoader() {
    }

    static Loaded load(ContentResolver resolver, Uri uri) throws IOException {
        byte[] data = readAll(resolver, uri);
        Loaded out = new Loaded();
        out.orientation = ExifReader.orientation(data);
        // Full resolution and not premultiplied: the contract resizes the whole image, and premultiplied
        // storage would round away colour in transparent pixels before the core composites them.
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inPremultiplied = false;
        Bitmap full = BitmapFactory.decodeByteArray(data, 0, data.length, o);
        if (full == null) {
            throw new IOException("not an image Android can decode");
        }
        out.width = full.getWidth();
        out.height = full.getHeight();
        out.argb = new int[out.width * out.height];
        full.getPixels(out.argb, 0, out.width, 0, 0, out.width, out.height);
        full.recycle();
        // A small separate bitmap for the screen (a non-premultiplied one cannot be drawn).
        BitmapFactory.Options p = new BitmapFactory.Options();
        p.inSampleSize = Math.max(1, Math.max(out.width, out.height) / 512);
        out.preview = BitmapFactory.decodeByteArray(data, 0, data.length, p);
        return out;
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
            }
            return buf.toByteArray();
        } finally {
            in.close();
        }
    }
}
