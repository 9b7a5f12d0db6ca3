package org.melkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/**
 * The preprocessing contracts alone against Python, no model needed: for every image of the contract goldens
 * ({@code melkit.release.golden.write_contract_goldens}), every contract (v1, v2) and every size, the {@code q} the
 * core computes from the stored pixels and their EXIF orientation, plain and with Shades of Gray colour
 * constancy, must be Python's byte for byte.
 *
 * <p>Photo-sized images are not stored: {@link #photoImage} generates them from a few integers, as
 * {@code melkit.release.golden.photo_image} does, and the RGBA bytes' SHA-256 must be the one Python recorded.
 *
 * <p>The directory comes from the system property {@code melkit.contract}, else the committed
 * {@code src/test/resources/contract}; it must exist (these goldens are always committed). The count of
 * checked outputs is printed so the caller can see that something was checked.
 */
public class ContractGoldenTest {
    static File contractDir() {
        return new File(System.getProperty("melkit.contract", "src/test/resources/contract"));
    }

    /** {@code melkit.release.golden._hash_noise}'s value at flat index {@code i}: a multiply-xorshift hash, mod 2^64. */
    static int hashNoise(long i, int seed) {
        long x = (i + (long) seed * 0x9E3779B9L) * 0x9E3779B97F4A7C15L;
        x ^= x >>> 29;
        x *= 0xBF58476D1CE4E5B9L;
        x ^= x >>> 32;
        return (int) (x >>> 56);
    }

    /** {@code melkit.release.golden.photo_image(h, w, seed)} as RGBA bytes (alpha 255): skin field plus stripes. */
    static byte[] photoImage(int h, int w, int seed) {
        long[] base = {212, 132, 118};
        long[] fall = {70, 60, 55};
        long[] blob = {120, 95, 70};
        long d2max = (long) h * h + (long) w * w;
        long cy = 2L * h * 9 / 20;
        long cx = 2L * w * 11 / 20;
        long r = Math.min(h, w) * 7L / 10;
        byte[] out = new byte[h * w * 4];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                long d2 = (2L * y - h) * (2L * y - h) + (2L * x - w) * (2L * x - w);
                long b2 = (2L * y - cy) * (2L * y - cy) + (2L * x - cx) * (2L * x - cx);
                long inside = Math.max(r * r - b2, 0L) * 256 / (r * r);
                long stripes = ((3L * x + 5L * y) % 7 - 3) * 10;
                for (int c = 0; c < 3; c++) {
                    long v = base[c] - fall[c] * d2 / d2max - blob[c] * inside / 256;
                    v += hashNoise(((long) y * w + x) * 3 + c, seed) % 7 - 3;
                    v = Math.min(255L, Math.max(0L, v));  // _skin_field's clip
                    v = Math.min(255L, Math.max(0L, v + stripes));
                    out[4 * (y * w + x) + c] = (byte) v;
                }
                out[4 * (y * w + x) + 3] = (byte) 255;
            }
        }
        return out;
    }

    static int[] pixels(File dir, JSONObject img) throws Exception {
        if (img.has("pixels")) {
            return GoldenTest.argb(GoldenTest.bytes(dir, img.getString("pixels")));
        }
        JSONObject g = img.getJSONObject("generated");
        assertEquals("photo_image", g.getString("kind"));
        byte[] rgba = photoImage(g.getInt("height"), g.getInt("width"), g.getInt("seed"));
        assertEquals(img.getString("name") + ": generated pixels differ from Python's",
                img.getString("pixels_sha256"), ModelCard.sha256Hex(rgba));
        return GoldenTest.argb(rgba);
    }

    static int version(String contract) {
        if (ModelCard.CONTRACT.equals(contract)) {
            return 1;
        }
        assertEquals(ModelCard.CONTRACT_V2, contract);
        return 2;
    }

    @Test
    public void coreMatchesPythonOnEveryContractGolden() throws Exception {
        File dir = contractDir();
        assertTrue("no contract goldens in " + dir, new File(dir, "index.json").isFile());
        JSONObject index = new JSONObject(GoldenTest.text(new File(dir, "index.json")));
        assertEquals("melkit-contract-golden-2", index.getString("format"));
        JSONArray contracts = index.getJSONArray("contracts");
        assertEquals(ModelCard.CONTRACT, contracts.getString(0));
        assertEquals(ModelCard.CONTRACT_V2, contracts.getString(1));
        JSONArray images = index.getJSONArray("images");
        int checked = 0;
        int withColorConstancy = 0;
        int boxed = 0;
        int rotated = 0;
        for (int n = 0; n < images.length(); n++) {
            JSONObject img = images.getJSONObject(n);
            String name = img.getString("name");
            int w = img.getInt("width");
            int h = img.getInt("height");
            int orientation = img.getInt("orientation");
            int[] pixels = pixels(dir, img);
            assertEquals(name + " pixel count", w * h, pixels.length);
            JSONArray outputs = img.getJSONArray("outputs");
            for (int k = 0; k < outputs.length(); k++) {
                JSONObject o = outputs.getJSONObject(k);
                int size = o.getInt("size");
                int version = version(o.getString("contract"));
                String cc = o.isNull("color_constancy") ? null : o.getString("color_constancy");
                String what = name + " " + w + "x" + h + " at " + size + (cc == null ? "" : " " + cc) + " "
                        + o.getString("contract") + (orientation == 1 ? "" : " orientation " + orientation);
                if (version == 2) {
                    int boxK = ContractPreprocessor.boxFactor(ExifOrientation.uprightWidth(w, h, orientation),
                            ExifOrientation.uprightHeight(w, h, orientation), size);
                    assertEquals(what + " box k", o.getInt("box_k"), boxK);
                    boxed += boxK > 1 ? 1 : 0;
                }
                byte[] want = GoldenTest.bytes(dir, o.getString("q"));
                byte[] got = ContractPreprocessor.toQ(pixels, w, h, orientation, size, cc, version);
                String diff = GoldenTest.firstDifference(want, got);
                assertTrue(what + ": q differs from Python's at " + diff, diff == null);
                if (cc != null) {
                    // Step 3b on its own over the plain q: the same bytes, from the same illuminant bits.
                    byte[] plain = ContractPreprocessor.toQ(pixels, w, h, orientation, size, null, version);
                    double[] e = ContractPreprocessor.illuminant(plain, ContractPreprocessor.SHADES_OF_GRAY_P);
                    JSONArray wantE = o.getJSONArray("illuminant");
                    for (int c = 0; c < 3; c++) {
                        assertEquals(what + " illuminant " + c + " (bits)",
                                Double.doubleToLongBits(wantE.getDouble(c)), Double.doubleToLongBits(e[c]));
                    }
                    assertArrayEquals(what + " via shadesOfGray(plain q)", want,
                            ContractPreprocessor.shadesOfGray(plain, ContractPreprocessor.SHADES_OF_GRAY_P));
                    withColorConstancy++;
                }
                rotated += orientation != 1 ? 1 : 0;
                System.out.println("contract golden ok: " + what);
                checked++;
            }
        }
        assertTrue("the contract goldens hold outputs with colour constancy", withColorConstancy > 0);
        assertTrue("the contract goldens hold v2 outputs with a box step", boxed > 0);
        assertTrue("the contract goldens hold an EXIF-rotated image", rotated > 0);
        System.out.println("contract goldens checked: " + checked + " (with colour constancy: "
                + withColorConstancy + ", v2 box step: " + boxed + ", EXIF-rotated: " + rotated + ")");
    }
}
