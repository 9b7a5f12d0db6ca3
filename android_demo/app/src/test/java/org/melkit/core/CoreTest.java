package org.melkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

/** Core behaviour the goldens do not reach: refusals, odd EXIF bytes, identities. */
public class CoreTest {
    static final String CARD = "{\"melkit_card\":1,\"name\":\"m\",\"version\":\"1.0.0\",\"variant\":\"int8\","
            + "\"model_file\":\"m.tflite\",\"sha256\":\"%s\",\"size_bytes\":3,\"labels\":[\"nv\",\"mel\"],"
            + "\"labels_file\":\"labels.txt\",\"threshold\":%s,\"threshold_policy\":\"youden\",\"decision\":\"d\","
            + "\"preprocessing\":{\"name\":\"%s\",\"color\":\"RGB\",\"resize\":\"r\",\"rounding\":\"r\","
            + "\"scale\":\"s\",\"mean\":128.0,\"std\":128.0,"
            + "\"input_quantization\":{\"dtype\":\"uint8\",\"scale\":0.0078125,\"zero_point\":128},\"image_size\":4},"
            + "\"input\":{\"name\":\"i\",\"dtype\":\"uint8\",\"shape\":[1,4,4,3],"
            + "\"quantization\":{\"scale\":0.0078125,\"zero_point\":128}},"
            + "\"output\":{\"name\":\"o\",\"dtype\":\"uint8\",\"shape\":[1,2],"
            + "\"quantization\":{\"scale\":0.00390625,\"zero_point\":0},\"meaning\":\"m\"},"
            + "\"source_run\":{},\"training_data\":{},\"validation\":{},\"selfcheck\":{},\"versions\":{},"
            + "\"not_a_medical_device\":\"research only\"}";

    static String card(String threshold, String contract) {
        return String.format(CARD, ModelCard.sha256Hex(new byte[] {1, 2, 3}), threshold, contract);
    }

    @Test
    public void cardParsesAndChecksTheModelBytes() {
        ModelCard c = ModelCard.parse(card("0.5", "melkit-v1"));
        assertEquals(1, c.melIndex);
        assertEquals(4, c.imageSize);
        assertTrue(c.matches(new byte[] {1, 2, 3}));
        assertFalse(c.matches(new byte[] {1, 2, 4}));
    }

    @Test
    public void cardsTheCoreCannotFollowAreRefused() {
        String[] bad = {card("1.5", "melkit-v1"), card("0.5", "other-contract"), "{\"melkit_card\":2}", "not json",
            card("0.5", "melkit-v1").replace("\"mel\"", "\"melanoma\""),
            card("0.5", "melkit-v1").replace("[1,4,4,3]", "[1,4,5,3]"),
            card("0.5", "melkit-v1").replace("\"dtype\":\"uint8\",\"shape\":[1,2]", "\"dtype\":\"int16\",\"shape\":[1,2]"),
            card("0.5", "melkit-v1").replace("\"threshold\":0.5", "\"threshold\":\"0.5\""),
            card("0.5", "melkit-v1").replace("\"size_bytes\":3,", "")};
        for (String json : bad) {
            try {
                ModelCard.parse(json);
                fail("accepted " + json);
            } catch (IllegalArgumentException expected) {
                // refused with a message, as the app shows it
            }
        }
    }

    @Test
    public void decisionIsAtTheThresholdInclusive() {
        ModelCard c = ModelCard.parse(card("0.5", "melkit-v1"));
        assertEquals(Prediction.SUSPICIOUS, Postprocessor.predict(new byte[] {0, (byte) 128}, c).decision());
        assertEquals(Prediction.NEVUS_LIKE, Postprocessor.predict(new byte[] {0, (byte) 127}, c).decision());
        assertEquals(128 * 0.00390625, Postprocessor.predict(new byte[] {0, (byte) 128}, c).pMel, 0.0);
    }

    @Test
    public void sameSizeResizeIsTheIdentityAndInputTypesShift() {
        int[] px = new int[16];
        for (int i = 0; i < px.length; i++) {
            px[i] = 0xFF000000 | (i * 16) << 16 | (255 - i) << 8 | i;
        }
        byte[] q = ContractPreprocessor.resizeToQ(px, 4, 4, 1, 4);
        for (int i = 0; i < 16; i++) {
            assertEquals(i * 16, q[3 * i] & 0xFF);
            assertEquals(255 - i, q[3 * i + 1] & 0xFF);
            assertEquals(i, q[3 * i + 2] & 0xFF);
        }
        TensorSpec int8 = new TensorSpec("int8", new int[] {1, 4, 4, 3}, 0.0078125, 0);
        byte[] s = ContractPreprocessor.encodeInput(q, int8);
        assertEquals((q[0] & 0xFF) - 128, s[0]);
        TensorSpec f32 = new TensorSpec("float32", new int[] {1, 4, 4, 3}, 0, 0);
        byte[] f = ContractPreprocessor.encodeInput(q, f32);
        assertEquals(-1.0f, Float.intBitsToFloat(f[0] & 0xFF | (f[1] & 0xFF) << 8 | (f[2] & 0xFF) << 16
                | (f[3] & 0xFF) << 24), 0f);  // q = 0 -> (0 - 128) / 128
    }

    @Test
    public void opaqueAndTransparentPixels() {
        for (int c = 0; c < 256; c++) {
            assertEquals(c, ContractPreprocessor.overBlack(c, 255));
            assertEquals(0, ContractPreprocessor.overBlack(c, 0));
        }
    }

    /** A JPEG with only an APP1 Exif segment (big- or little-endian TIFF) holding an orientation. */
    static byte[] jpegWithOrientation(int o, boolean little) {
        byte[] tiff = little
                ? new byte[] {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (byte) o, 0, 0, 0, 0, 0, 0, 0}
                : new byte[] {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (byte) o, 0, 0, 0, 0, 0, 0};
        int len = 2 + 6 + tiff.length;
        byte[] out = new byte[4 + len + 2];
        out[0] = (byte) 0xFF;
        out[1] = (byte) 0xD8;
        out[2] = (byte) 0xFF;
        out[3] = (byte) 0xE1;
        out[4] = (byte) (len >> 8);
        out[5] = (byte) len;
        byte[] exif = {'E', 'x', 'i', 'f', 0, 0};
        System.arraycopy(exif, 0, out, 6, 6);
        System.arraycopy(tiff, 0, out, 12, tiff.length);
        out[out.length - 2] = (byte) 0xFF;
        out[out.length - 1] = (byte) 0xD9;
        return out;
    }

    @Test
    public void exifReaderBothByteOrdersAndGarbage() {
        for (int o = 1; o <= 8; o++) {
            assertEquals(o, ExifReader.orientation(jpegWithOrientation(o, true)));
            assertEquals(o, ExifReader.orientation(jpegWithOrientation(o, false)));
        }
        assertEquals(1, ExifReader.orientation(jpegWithOrientation(9, true)));  // out of range
        byte[] cut = jpegWithOrientation(6, true);
        assertEquals(1, ExifReader.orientation(java.util.Arrays.copyOf(cut, 20)));  // truncated
        assertEquals(1, ExifReader.orientation(new byte[40]));
        assertEquals(1, ExifReader.orientation(null));
    }

    @Test
    public void explicitRotationRoundTrips() {
        int[] px = {1, 2, 3, 4, 5, 6};
        int[] size = new int[2];
        int[] r6 = ExifOrientation.apply(px, 3, 2, 6, size);
        assertArrayEquals(new int[] {4, 1, 5, 2, 6, 3}, r6);
        int[] back = ExifOrientation.apply(r6, size[0], size[1], 8, size);
        assertArrayEquals(px, back);
    }
}
