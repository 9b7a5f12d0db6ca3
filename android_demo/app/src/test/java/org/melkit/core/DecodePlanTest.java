package org.melkit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/**
 * {@link DecodePlan} against the decode sizes of {@code melkit predict}: the golden table written by
 * {@code tests/android/decode_golden.py} from Python's own rule (tests/test_android.py checks that the
 * committed table is that script's output, and that Pillow decodes real JPEGs to its sizes).
 *
 * <p>The table comes from the system property {@code melkit.decode}, else the committed
 * {@code src/test/resources/decode/sizes.json}. The count of checked plans is printed so the caller can see
 * that something was checked.
 */
public class DecodePlanTest {
    static File table() {
        return new File(System.getProperty("melkit.decode", "src/test/resources/decode/sizes.json"));
    }

    @Test
    public void plansMatchPythonsDecodeSizes() throws Exception {
        JSONObject t = new JSONObject(GoldenTest.text(table()));
        assertEquals("melkit-decode-golden-1", t.getString("format"));
        assertEquals("Python's pixel limit", t.getLong("python_max_pixels"), DecodePlan.PYTHON_MAX_PIXELS);
        JSONArray rows = t.getJSONArray("plans");
        int asPython = 0;
        int bounded = 0;
        int refused = 0;
        for (int i = 0; i < rows.length(); i++) {
            JSONObject r = rows.getJSONObject(i);
            int w = r.getInt("width");
            int h = r.getInt("height");
            boolean jpeg = "jpeg".equals(r.getString("format"));
            int size = r.getInt("image_size");
            int version = ContractGoldenTest.version(r.getString("contract"));
            String what = w + "x" + h + " " + r.getString("format") + " at " + size + " v" + version;
            DecodePlan p;
            try {
                p = DecodePlan.of(w, h, jpeg, size, version);
            } catch (IllegalArgumentException e) {
                assertTrue(what + ": refused but Python decodes it (" + e.getMessage() + ")", r.has("refused"));
                assertEquals(what + " refusal", r.getString("refused"), e.getMessage());
                refused++;
                continue;
            }
            assertFalse(what + ": planned but Python refuses it: " + p, r.has("refused"));
            JSONArray decoded = r.getJSONArray("decoded");
            assertEquals(what + " Python's draft scale", r.getInt("scale"), p.pythonScale);
            assertEquals(what + " Python's decoded width", decoded.getInt(0), p.pythonWidth);
            assertEquals(what + " Python's decoded height", decoded.getInt(1), p.pythonHeight);
            assertTrue(what + " decodes " + p, (long) p.width * p.height <= DecodePlan.MAX_DECODE_PIXELS);
            if ((long) p.pythonWidth * p.pythonHeight <= DecodePlan.MAX_DECODE_PIXELS) {
                // Within the bound the phone decodes exactly as Python does: same inSampleSize, same size.
                assertTrue(what + " " + p, p.asPython);
                assertEquals(what + " sample", r.getInt("scale"), p.sampleSize);
                assertEquals(what + " width", decoded.getInt(0), p.width);
                assertEquals(what + " height", decoded.getInt(1), p.height);
                asPython++;
            } else {
                // Over it, the smallest power of two that fits: half of it would not fit.
                assertFalse(what + " " + p, p.asPython);
                assertTrue(what + " " + p, p.sampleSize > p.pythonScale);
                int half = p.sampleSize / 2;
                assertTrue(what + ": a smaller sample fits " + p, (long) DecodePlan.sampled(w, half, jpeg)
                        * DecodePlan.sampled(h, half, jpeg) > DecodePlan.MAX_DECODE_PIXELS);
                bounded++;
            }
        }
        assertTrue("the table has plans of each kind", asPython > 0 && bounded > 0 && refused > 0);
        System.out.println("decode plans checked: " + rows.length() + " (as Python: " + asPython
                + ", bounded: " + bounded + ", refused: " + refused + ")");
    }

    @Test
    public void phonePhotosAreNeverDecodedInFull() {
        // A 12-MP phone JPEG under a v2 card of size 224: libjpeg's 1/4 scale, as melkit predict decodes it.
        DecodePlan p = DecodePlan.of(4000, 3000, true, 224, 2);
        assertEquals(4, p.sampleSize);
        assertEquals(1000, p.width);
        assertEquals(750, p.height);
        assertTrue(p.asPython);
        // 144 Mpx: 1/8, 1500 x 1500.
        p = DecodePlan.of(12000, 12000, true, 224, 2);
        assertEquals(8, p.sampleSize);
        assertEquals(2250000L, (long) p.width * p.height);
        assertTrue(p.asPython);
        // Every format and contract: a 12-MP image is sampled (PNG, HEIF, v1 JPEG: not as Python, and said
        // so), a 144-Mpx one refused as Python refuses it; never a full-size int[].
        for (boolean jpeg : new boolean[] {true, false}) {
            for (int version = 1; version <= 2; version++) {
                for (int size : new int[] {17, 224, 512}) {
                    DecodePlan q = DecodePlan.of(4000, 3000, jpeg, size, version);
                    assertTrue(q.toString(), q.sampleSize >= 2);
                    assertTrue(q.toString(), (long) q.width * q.height <= 3000000L);
                    try {
                        DecodePlan r = DecodePlan.of(12000, 12000, jpeg, size, version);
                        assertTrue(jpeg + " v" + version + " " + r, jpeg && version == 2 && r.sampleSize == 8);
                    } catch (IllegalArgumentException e) {
                        assertTrue(e.getMessage(), e.getMessage().startsWith("12000x12000 is 144.0 Mpx, over"));
                    }
                }
            }
        }
    }

    @Test
    public void boundHoldsForEveryImagePythonTakes() {
        // For images Python decodes in full the fallback stays within the JPEG DCT scales (<= 8) and the
        // bound, for squares up to the limit and for the thinnest images.
        int[][] sizes = {{7071, 7071}, {50000, 1000}, {1000, 50000}, {65535, 762}, {50000000, 1}, {3, 16666666}};
        for (int[] s : sizes) {
            for (boolean jpeg : new boolean[] {true, false}) {
                DecodePlan p = DecodePlan.of(s[0], s[1], jpeg, 224, 1);
                assertTrue(p.toString(), p.sampleSize <= 8);
                assertTrue(p.toString(), (long) p.width * p.height <= DecodePlan.MAX_DECODE_PIXELS);
            }
        }
        // A 2.6-Gpx JPEG under v2 is drafted to 1/8 by Python (41 Mpx, taken); the phone goes to 1/32.
        DecodePlan p = DecodePlan.of(65535, 40000, true, 224, 2);
        assertEquals(8, p.pythonScale);
        assertEquals(32, p.sampleSize);
        assertTrue(p.toString(), (long) p.width * p.height <= DecodePlan.MAX_DECODE_PIXELS);
    }

    @Test
    public void jpegIsRecognisedAndNonImagesRefused() {
        assertTrue(DecodePlan.isJpeg("image/jpeg"));
        assertFalse(DecodePlan.isJpeg("image/png"));
        assertFalse(DecodePlan.isJpeg("image/heif"));
        assertFalse(DecodePlan.isJpeg(null));
        // PNG under v2: decoded in full as Python does, the contract's box step does the reduction.
        assertEquals(1, DecodePlan.of(1001, 999, false, 224, 2).sampleSize);
        assertEquals(2, DecodePlan.of(1001, 999, true, 224, 2).sampleSize);
        for (int[] bad : new int[][] {{-1, -1}, {0, 10}, {10, 0}}) {
            try {
                DecodePlan.of(bad[0], bad[1], true, 224, 2);
                fail("planned " + bad[0] + "x" + bad[1]);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().startsWith("not an image"));
            }
        }
    }

    @Test
    public void photoPickerWhereThePlatformHasIt() {
        assertTrue(PhotoPicker.available(33, 0));
        assertTrue(PhotoPicker.available(35, 0));
        assertTrue(PhotoPicker.available(30, 2));
        assertTrue(PhotoPicker.available(31, 7));
        assertFalse(PhotoPicker.available(30, 1));
        assertFalse(PhotoPicker.available(32, 0));
        assertFalse(PhotoPicker.available(29, 5));  // no SDK extensions before Android 11
        assertFalse(PhotoPicker.available(24, 0));
        assertEquals("android.provider.action.PICK_IMAGES", PhotoPicker.ACTION_PICK_IMAGES);
    }
}
