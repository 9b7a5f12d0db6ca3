package org.melkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/**
 * The core against Python, on golden sets written by {@code melkit bundle} (melkit/release/golden.py): for every
 * image the model input must be Python's byte for byte, and the postprocessing of Python's LiteRT output
 * must give the same scores, P(mel) and decision (and, for a model with an input-domain guard, the same
 * domain score and in-domain answer; "not assessed" out of the domain; for a card with a borderline band,
 * the same borderline answer and shown meaning; for a card with risk bands, the same band, likelihood ratio
 * and post-test probabilities; each checked where the golden records it).
 *
 * <p>Golden directories come from the system property {@code melkit.golden} (separated by the path
 * separator), else the committed {@code src/test/resources/golden}. Each checked image is printed so the
 * caller can see that something was checked.
 */
public class GoldenTest {
    static List<File> goldenDirs() {
        String prop = System.getProperty("melkit.golden", "src/test/resources/golden");
        List<File> dirs = new ArrayList<File>();
        for (String p : prop.split(File.pathSeparator)) {
            if (!p.isEmpty() && new File(p, "index.json").isFile()) {
                dirs.add(new File(p));
            }
        }
        return dirs;
    }

    static String text(File f) throws IOException {
        return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
    }

    static byte[] bytes(File dir, String name) throws IOException {
        return Files.readAllBytes(new File(dir, name).toPath());
    }

    /** RGBA bytes to the ARGB ints Bitmap.getPixels gives. */
    static int[] argb(byte[] rgba) {
        int[] out = new int[rgba.length / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = (rgba[4 * i + 3] & 0xFF) << 24 | (rgba[4 * i] & 0xFF) << 16 | (rgba[4 * i + 1] & 0xFF) << 8
                    | (rgba[4 * i + 2] & 0xFF);
        }
        return out;
    }

    /** Python's raw output values back to the bytes LiteRT's output buffer holds. */
    static byte[] rawOutput(JSONArray values, TensorSpec spec) throws Exception {
        byte[] out = new byte[spec.numBytes()];
        for (int i = 0; i < values.length(); i++) {
            if (spec.dtype.equals("float32")) {
                int bits = Float.floatToRawIntBits((float) values.getDouble(i));
                for (int k = 0; k < 4; k++) {
                    out[4 * i + k] = (byte) (bits >> (8 * k));
                }
            } else {
                out[i] = (byte) values.getInt(i);
            }
        }
        return out;
    }

    static String firstDifference(byte[] want, byte[] got) {
        if (want.length != got.length) {
            return "length " + got.length + " != " + want.length;
        }
        for (int i = 0; i < want.length; i++) {
            if (want[i] != got[i]) {
                return "byte " + i + ": " + (got[i] & 0xFF) + " != " + (want[i] & 0xFF);
            }
        }
        return null;
    }

    @Test
    public void coreMatchesPythonOnEveryGoldenImage() throws Exception {
        int checked = 0;
        int guarded = 0;
        int notAssessed = 0;
        int banded = 0;
        int borderline = 0;
        int risked = 0;
        int[] perBand = new int[0];
        for (File dir : goldenDirs()) {
            JSONObject index = new JSONObject(text(new File(dir, "index.json")));
            ModelCard card = ModelCard.parse(text(new File(dir, index.getString("card"))));
            assertEquals(index.getString("model_sha256"), card.sha256);
            assertEquals(index.getDouble("threshold"), card.threshold, 0.0);
            if (index.has("borderline")) {  // older golden sets have none
                JSONObject band = index.getJSONObject("borderline");
                assertTrue(dir + ": a borderline band in the index but not in the card", card.hasBorderline());
                assertEquals(band.getDouble("low"), card.borderlineLow, 0.0);
                assertEquals(band.getDouble("high"), card.borderlineHigh, 0.0);
            }
            double[] prevalences = new double[0];
            if (index.has("risk_bands")) {  // older golden sets have none
                JSONObject risk = index.getJSONObject("risk_bands");
                JSONArray edges = risk.getJSONArray("edges");
                JSONArray lrs = risk.getJSONArray("lr");
                assertEquals(dir + " risk bands", edges.length() - 1, card.riskBands.size());
                for (int k = 0; k < card.riskBands.size(); k++) {
                    ModelCard.RiskBand b = card.riskBands.get(k);
                    assertEquals(dir + " band " + k + " low", edges.getDouble(k), b.low, 0.0);
                    assertEquals(dir + " band " + k + " high", edges.getDouble(k + 1), b.high, 0.0);
                    assertEquals(dir + " band " + k + " LR", lrs.isNull(k) ? Double.NaN : lrs.getDouble(k), b.lr, 0.0);
                }
                JSONArray q = risk.getJSONArray("prevalences");
                prevalences = new double[q.length()];
                for (int i = 0; i < q.length(); i++) {
                    prevalences[i] = q.getDouble(i);
                }
                if (perBand.length < card.riskBands.size()) {
                    perBand = java.util.Arrays.copyOf(perBand, card.riskBands.size());
                }
            }
            JSONArray images = index.getJSONArray("images");
            for (int n = 0; n < images.length(); n++) {
                JSONObject img = images.getJSONObject(n);
                String name = dir.getName() + "/" + img.getString("name");
                int w = img.getInt("width");
                int h = img.getInt("height");
                int orientation = ExifReader.orientation(bytes(dir, img.getString("source")));
                assertEquals(name + " EXIF orientation", img.getInt("exif_orientation"), orientation);
                int[] pixels = argb(bytes(dir, img.getString("pixels")));
                assertEquals(name + " pixel count", w * h, pixels.length);
                byte[] want = bytes(dir, img.getString("input"));

                byte[] got = ContractPreprocessor.encodeInput(
                        ContractPreprocessor.toQ(pixels, w, h, orientation, card), card.input);
                String diff = firstDifference(want, got);
                assertTrue(name + " input tensor differs from Python's at " + diff, diff == null);

                // The same through an explicitly rotated copy: the in-place mapping is no shortcut.
                int[] size = new int[2];
                int[] upright = ExifOrientation.apply(pixels, w, h, orientation, size);
                byte[] got2 = ContractPreprocessor.encodeInput(
                        ContractPreprocessor.toQ(upright, size[0], size[1], 1, card), card.input);
                assertArrayEquals(name + " input via ExifOrientation.apply", want, got2);

                byte[] raw = rawOutput(img.getJSONArray("output_raw"), card.output);
                Prediction p;
                if (card.hasDomainGuard()) {  // a second output: the input-domain guard's score
                    p = Postprocessor.predict(raw, rawOutput(img.getJSONArray("domain_output_raw"),
                            card.domainOutput), card);
                    assertEquals(name + " domain score", img.getDouble("domain_score"), p.domainScore, 0.0);
                    assertEquals(name + " in domain", img.getBoolean("in_domain"), p.inDomain);
                    guarded++;
                    notAssessed += p.inDomain ? 0 : 1;
                } else {
                    assertTrue(name + ": a domain score without a guard in the card", !img.has("domain_score"));
                    p = Postprocessor.predict(raw, card);
                }
                JSONArray probs = img.getJSONArray("probabilities");
                for (int i = 0; i < probs.length(); i++) {
                    assertEquals(name + " score " + i, probs.getDouble(i), p.probabilities[i], 0.0);
                }
                assertEquals(name + " P(mel)", img.getDouble("p_mel"), p.pMel, 0.0);
                // what the app shows (folded threshold, temperature); the goldens of other cards have none
                assertEquals(name + " shown P(mel)", img.has("p_shown") ? img.getDouble("p_shown") : p.pMel,
                        p.shownPMel, 1e-12);
                assertEquals(name + " decision", img.getString("decision"), p.decision());
                if (img.has("borderline")) {  // a card with a band; older golden sets record neither
                    assertEquals(name + " borderline", img.getBoolean("borderline"), p.borderline);
                    assertEquals(name + " meaning", img.getString("meaning"), p.meaning());
                    banded++;
                    borderline += p.borderline ? 1 : 0;
                } else {
                    assertTrue(name + ": borderline in the card but not in the golden", !card.hasBorderline());
                }
                if (img.has("risk_band")) {  // a card with risk bands; older golden sets record none
                    assertEquals(name + " risk band", img.isNull("risk_band") ? -1 : img.getInt("risk_band"),
                            p.riskBand);
                    assertEquals(name + " likelihood ratio",
                            img.isNull("likelihood_ratio") ? Double.NaN : img.getDouble("likelihood_ratio"),
                            p.likelihoodRatio, 0.0);
                    JSONArray post = img.isNull("post_test") ? null : img.getJSONArray("post_test");
                    for (int i = 0; i < prevalences.length; i++) {
                        assertEquals(name + " post-test probability at " + prevalences[i],
                                post == null ? Double.NaN : post.getDouble(i), p.postTestProbability(prevalences[i]),
                                1e-15);
                    }
                    risked++;
                    if (p.riskBand >= 0) {
                        perBand[p.riskBand]++;
                    }
                } else {
                    assertTrue(name + ": risk bands in the card but not in the golden", !card.hasRiskBands());
                }
                System.out.println("golden ok: " + name + " " + w + "x" + h + " orientation " + orientation
                        + " input " + card.input + (card.colorConstancy == null ? "" : " " + card.colorConstancy)
                        + " P(mel) " + p.pMel + " " + p.meaning()
                        + (p.hasRiskBand() ? " band " + p.riskBand + " LR " + p.likelihoodRatio : "")
                        + (card.hasDomainGuard() ? " domain score " + p.domainScore : ""));
                checked++;
            }
        }
        System.out.println("golden images checked: " + checked);
        if (guarded > 0) {
            System.out.println("golden domain guard checked: " + guarded + " (not assessed: " + notAssessed + ")");
        }
        if (banded > 0) {
            System.out.println("golden borderline checked: " + banded + " (borderline: " + borderline + ")");
        }
        if (risked > 0) {
            System.out.println("golden risk bands checked: " + risked + " (per band: "
                    + java.util.Arrays.toString(perBand) + ")");
        }
    }

    @Test
    public void orientationMatchesPillowForAllEightTags() throws Exception {
        for (File dir : goldenDirs()) {
            JSONObject cases = new JSONObject(text(new File(dir, "index.json"))).getJSONObject("orientation_cases");
            int w = cases.getInt("width");
            int h = cases.getInt("height");
            int[] src = rgbArray(cases.getJSONArray("rgb"));
            for (int o = 1; o <= 8; o++) {
                JSONObject r = cases.getJSONObject("results").getJSONObject(String.valueOf(o));
                int[] size = new int[2];
                int[] got = ExifOrientation.apply(src, w, h, o, size);
                assertEquals("width for " + o, r.getInt("width"), size[0]);
                assertEquals("height for " + o, r.getInt("height"), size[1]);
                assertArrayEquals("pixels for orientation " + o, rgbArray(r.getJSONArray("rgb")), got);
            }
            System.out.println("orientation ok: " + dir.getName() + " tags 1-8");
        }
    }

    static int[] rgbArray(JSONArray a) throws Exception {
        int[] out = new int[a.length() / 3];
        for (int i = 0; i < out.length; i++) {
            out[i] = 0xFF000000 | a.getInt(3 * i) << 16 | a.getInt(3 * i + 1) << 8 | a.getInt(3 * i + 2);
        }
        return out;
    }
}
