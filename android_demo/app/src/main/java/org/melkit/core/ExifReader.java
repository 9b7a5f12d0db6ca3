package org.melkit.core;

/**
 * Reads the EXIF orientation tag from JPEG (APP1) and PNG (eXIf chunk) bytes, the two places where
 * Pillow finds it. Anything malformed or absent reads as 1 (as stored): a bad tag must not stop a
 * classification, and Pillow treats it the same way.
 */
public final class ExifReader {
    private static final int TAG_ORIENTATION = 0x0112;

    private ExifReader() {
    }

    public static int orientation(byte[] data) {
        if (data == null || data.length < 12) {
            return 1;
        }
        if (u8(data, 0) == 0xFF && u8(data, 1) == 0xD8) {
            return fromJpeg(data);
        }
        if (u8(data, 0) == 0x89 && data[1] == 'P' && data[2] == 'N' && data[3] == 'G') {
            return fromPng(data);
        }
        return 1;
    }

    private static int fromJpeg(byte[] d) {
        int pos = 2;
        while (pos + 4 <= d.length) {
            if (u8(d, pos) != 0xFF) {
                return 1;
            }
            int marker = u8(d, pos + 1);
            if (marker == 0xFF) {  // fill byte before a marker
                pos++;
                continue;
            }
            if (marker == 0xD9 || marker == 0xDA) {  // end of image, start of scan: no metadata after
                return 1;
            }
            if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // markers without a length
                pos += 2;
                continue;
            }
            int len = u16(d, pos + 2, false);
            if (len < 2 || pos + 2 + len > d.length) {
                return 1;
            }
            if (marker == 0xE1 && len >= 8 && d[pos + 4] == 'E' && d[pos + 5] == 'x' && d[pos + 6] == 'i'
                    && d[pos + 7] == 'f' && d[pos + 8] == 0 && d[pos + 9] == 0) {
                return fromTiff(d, pos + 10, pos + 2 + len);
            }
            pos += 2 + len;
        }
        return 1;
    }

    private static int fromPng(byte[] d) {
        int pos = 8;
        while (pos + 12 <= d.length) {
            long len = u32(d, pos, false);
            if (len < 0 || pos + 12 + len > d.length) {
                return 1;
            }
            String type = new String(d, pos + 4, 4, java.nio.charset.StandardCharsets.US_ASCII);
            if (type.equals("eXIf")) {
                return fromTiff(d, pos + 8, pos + 8 + (int) len);
            }
            if (type.equals("IDAT") || type.equals("IEND")) {  // Pillow reads eXIf only before image data
                return 1;
            }
            pos += 12 + (int) len;
        }
        return 1;
    }

    /** The orientation in a TIFF structure (EXIF's container) at {@code [start, end)} of {@code d}. */
    private static int fromTiff(byte[] d, int start, int end) {
        if (end - start < 8) {
            return 1;
        }
        boolean little;
        if (d[start] == 'I' && d[start + 1] == 'I') {
            little = true;
        } else if (d[start] == 'M' && d[start + 1] == 'M') {
            little = false;
        } else {
            return 1;
        }
        if (u16(d, start + 2, little) != 42) {
            return 1;
        }
        long ifd = start + u32(d, start + 4, little);
        if (ifd + 2 > end) {
            return 1;
        }
        int count = u16(d, (int) ifd, little);
        for (int i = 0; i < count; i++) {
            int entry = (int) ifd + 2 + 12 * i;
            if (entry + 12 > end) {
                return 1;
            }
            if (u16(d, entry, little) == TAG_ORIENTATION) {
                int type = u16(d, entry + 2, little);
                int value = type == 3 ? u16(d, entry + 8, little) : type == 4 ? (int) u32(d, entry + 8, little) : 1;
                return value >= 1 && value <= 8 ? value : 1;
            }
        }
        return 1;
    }

    private static int u8(byte[] d, int i) {
        return d[i] & 0xFF;
    }

    private static int u16(byte[] d, int i, boolean little) {
        return little ? u8(d, i) | u8(d, i + 1) << 8 : u8(d, i) << 8 | u8(d, i + 1);
    }

    private static long u32(byte[] d, int i, boolean little) {
        long lo = u16(d, little ? i : i + 2, little);
        long hi = u16(d, little ? i + 2 : i, little);
        return hi << 16 | lo;
    }
}
