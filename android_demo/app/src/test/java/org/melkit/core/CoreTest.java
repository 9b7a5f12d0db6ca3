package org.melkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
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
        String[] bad = {card("1.5", "melkit-v1"), card("0.5", "other-contract"), card("0.5", "melkit-v3"), "{\"melkit_card\":2}", "not json",
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
    public void aThresholdOfZeroOrOneIsRefused() {
        // 0 or 1 calls every image one class: the app refuses such a card, as melkit predict and bench do.
        String[] degenerate = {"0", "0.0", "-0.0", "1", "1.0"};
        for (String t : degenerate) {
            try {
                ModelCard.parse(card(t, "melkit-v1"));
                fail("accepted threshold " + t);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("'threshold'"));
            }
        }
        assertEquals(0.001, ModelCard.parse(card("0.001", "melkit-v1")).threshold, 0);
        assertEquals(0.999, ModelCard.parse(card("0.999", "melkit-v1")).threshold, 0);
        System.out.println("degenerate thresholds refused: " + degenerate.length);
    }

    static String cardWithGuard(String guard) {
        return card("0.5", "melkit-v1").replace("\"not_a_medical_device\":\"research only\"}",
                "\"not_a_medical_device\":\"research only\",\"domain_guard\":" + guard + "}");
    }

    static final String GUARD = "{\"output\":{\"name\":\"g\",\"dtype\":\"uint8\",\"shape\":[1,1],"
            + "\"quantization\":{\"scale\":0.05,\"zero_point\":0},\"index\":1},\"threshold\":4.0,"
            + "\"method\":\"mahalanobis\"}";

    @Test
    public void theDomainGuardIsOptionalAndGivesNotAssessed() {
        ModelCard plain = ModelCard.parse(card("0.5", "melkit-v1"));
        assertFalse(plain.hasDomainGuard());
        assertTrue(Double.isNaN(plain.domainThreshold));
        ModelCard c = ModelCard.parse(cardWithGuard(GUARD));
        assertTrue(c.hasDomainGuard());
        assertEquals(1, c.domainOutputIndex);
        assertEquals(4.0, c.domainThreshold, 0.0);
        byte[] probs = {(byte) 64, (byte) 192};  // P(mel) 0.75
        Prediction in = Postprocessor.predict(probs, new byte[] {(byte) 80}, c);  // score 4.0: at the threshold
        assertTrue(in.inDomain);
        assertEquals(4.0, in.domainScore, 1e-12);
        assertEquals(Prediction.SUSPICIOUS, in.decision());
        Prediction out = Postprocessor.predict(probs, new byte[] {(byte) 81}, c);  // 4.05 > 4.0
        assertFalse(out.inDomain);
        assertFalse(out.suspicious);
        assertEquals(Prediction.NOT_ASSESSED, out.decision());
        try {
            Postprocessor.predict(probs, c);
            fail("a guard model's prediction without its guard output");
        } catch (IllegalArgumentException expected) {
            // the guard output is needed
        }
        Prediction p = Postprocessor.predict(probs, plain);
        assertTrue(p.inDomain && Double.isNaN(p.domainScore));
        String[] refused = {GUARD.replace("\"index\":1", "\"index\":0"), GUARD.replace("[1,1]", "[1,2]"),
            GUARD.replace("\"threshold\":4.0,", ""), GUARD.replace(",\"index\":1", ""),
            GUARD.replace("\"threshold\":4.0", "\"threshold\":\"4\""), "[]"};
        for (String g : refused) {
            try {
                ModelCard.parse(cardWithGuard(g));
                fail("accepted domain_guard " + g);
            } catch (IllegalArgumentException expected) {
                // refused with a message naming what is wrong
            }
        }
    }

    static String withBorderline(String json, String band) {
        return json.replace("\"threshold\":0.5,", "\"threshold\":0.5,\"borderline\":" + band + ",");
    }

    /** Raw uint8 P(mel) {@code mel} (scale 1/256) of the test card's output. */
    static byte[] mel(int mel) {
        return new byte[] {(byte) (256 - mel), (byte) mel};
    }

    @Test
    public void theBorderlineBandIsShownWithTheBinaryDecision() {
        ModelCard plain = ModelCard.parse(card("0.5", "melkit-v1"));
        assertFalse(plain.hasBorderline());
        assertFalse(plain.isBorderline(0.5));
        Prediction p0 = Postprocessor.predict(mel(128), plain);
        assertFalse(p0.borderline);
        assertEquals(Prediction.SUSPICIOUS, p0.meaning());  // no band: the meaning is the decision
        // band [120/256, 136/256] = [0.46875, 0.53125] around the threshold 0.5, edges included
        String band = "{\"low\":0.46875,\"high\":0.53125,\"method\":\"test\",\"validation\":{\"n\":3}}";
        ModelCard c = ModelCard.parse(withBorderline(card("0.5", "melkit-v1"), band));
        assertTrue(c.hasBorderline());
        assertEquals(0.46875, c.borderlineLow, 0.0);
        assertEquals(0.53125, c.borderlineHigh, 0.0);
        int[] raw = {119, 120, 127, 128, 136, 137};
        String[] meaning = {Prediction.NEVUS_LIKE, "borderline: nevus-like", "borderline: nevus-like",
            "borderline: melanoma-suspicious", "borderline: melanoma-suspicious", Prediction.SUSPICIOUS};
        for (int i = 0; i < raw.length; i++) {
            Prediction p = Postprocessor.predict(mel(raw[i]), c);
            assertEquals("raw " + raw[i], meaning[i], p.meaning());
            assertEquals("raw " + raw[i], meaning[i].startsWith(Prediction.BORDERLINE), p.borderline);
            // the decision stays binary, as without the band
            assertEquals("raw " + raw[i], Postprocessor.predict(mel(raw[i]), plain).decision(), p.decision());
        }
        // not assessed (out of the guard's domain) is never borderline, whatever its P(mel)
        ModelCard guarded = ModelCard.parse(withBorderline(cardWithGuard(GUARD), band));
        Prediction out = Postprocessor.predict(mel(128), new byte[] {(byte) 81}, guarded);
        assertFalse(out.borderline);
        assertEquals(Prediction.NOT_ASSESSED, out.meaning());
        Prediction in = Postprocessor.predict(mel(128), new byte[] {(byte) 80}, guarded);
        assertTrue(in.borderline);
        assertEquals("borderline: melanoma-suspicious", in.meaning());
        // a band of one point, the threshold itself, is allowed
        ModelCard point = ModelCard.parse(withBorderline(card("0.5", "melkit-v1"),
                "{\"low\":0.5,\"high\":0.5,\"method\":\"m\"}"));
        assertTrue(Postprocessor.predict(mel(128), point).borderline);
        assertFalse(Postprocessor.predict(mel(127), point).borderline);
    }

    @Test
    public void aBorderlineBandThatDoesNotHoldTheThresholdIsRefused() {
        String[] refused = {
            "{\"low\":0.6,\"high\":0.7,\"method\":\"m\"}",  // low > threshold
            "{\"low\":0.3,\"high\":0.4,\"method\":\"m\"}",  // high < threshold
            "{\"low\":-0.1,\"high\":0.6,\"method\":\"m\"}",
            "{\"low\":0.4,\"high\":1.1,\"method\":\"m\"}",
            "{\"low\":\"0.4\",\"high\":0.6,\"method\":\"m\"}",
            "{\"low\":0.4,\"high\":true,\"method\":\"m\"}",
            "{\"high\":0.6,\"method\":\"m\"}",
            "{\"low\":0.4,\"high\":0.6}",
            "{\"low\":0.4,\"high\":0.6,\"method\":3}",
            "[0.4,0.6]", "null"};
        for (String band : refused) {
            try {
                ModelCard.parse(withBorderline(card("0.5", "melkit-v1"), band));
                fail("accepted borderline " + band);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("'borderline"));
            }
        }
        System.out.println("borderline bands refused: " + refused.length);
    }

    static String withRiskBands(String json, String ratios) {
        return json.replace("\"threshold\":0.5,", "\"threshold\":0.5,\"likelihood_ratios\":" + ratios + ",");
    }

    static String band(String name, String low, String high, String lr) {
        return "{\"name\":\"" + name + "\",\"low\":" + low + ",\"high\":" + high + ",\"lr\":" + lr + "}";
    }

    /** likelihood_ratios with these bands (and a free-form field the app ignores). */
    static String ratios(String... bands) {
        return "{\"method\":\"test\",\"measured_on\":\"validation\",\"bands\":[" + String.join(",", bands) + "]}";
    }

    /** Four bands with edges 0, 0.25, 0.5 (the test card's threshold), 0.75, 1; the last LR not measured. */
    static final String FOUR = ratios(band("well below", "0", "0.25", "0.1"), band("below", "0.25", "0.5", "0.6"),
            band("above", "0.5", "0.75", "3"), band("well above", "0.75", "1.0", "null"));

    @Test
    public void riskBandsGiveTheBandAboveAnEdgeAndItsLikelihoodRatio() {
        ModelCard plain = ModelCard.parse(card("0.5", "melkit-v1"));
        assertFalse(plain.hasRiskBands());
        assertEquals(-1, plain.riskBand(0.5));
        Prediction none = Postprocessor.predict(mel(128), plain);
        assertFalse(none.hasRiskBand());
        assertEquals(-1, none.riskBand);
        assertNull(none.riskBandName);
        assertTrue(Double.isNaN(none.likelihoodRatio) && Double.isNaN(none.postTestProbability(0.15)));

        ModelCard c = ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"), FOUR));
        assertTrue(c.hasRiskBands());
        assertEquals(4, c.riskBands.size());
        assertEquals("well above", c.riskBands.get(3).name);
        assertTrue(Double.isNaN(c.riskBands.get(3).lr));  // null in the card
        // numpy searchsorted side="right" over the inner edges: an output at an inner edge is in the band above
        double[] p = {0.0, 0.2499, 0.25, 0.4999, 0.5, 0.7499, 0.75, 0.99, 1.0, -0.1, 1.1, Double.NaN};
        int[] want = {0, 0, 1, 1, 2, 2, 3, 3, 3, 0, 3, -1};
        for (int i = 0; i < p.length; i++) {
            assertEquals("P(mel) " + p[i], want[i], c.riskBand(p[i]));
        }
        // the uint8 outputs at and beside the edges (scale 1/256): 64 is 0.25, 128 the threshold, 192 is 0.75
        int[] raw = {0, 63, 64, 127, 128, 191, 192, 255};
        int[] bands = {0, 0, 1, 1, 2, 2, 3, 3};
        for (int i = 0; i < raw.length; i++) {
            Prediction q = Postprocessor.predict(mel(raw[i]), c);
            assertEquals("raw " + raw[i], bands[i], q.riskBand);
            assertEquals("raw " + raw[i], c.riskBands.get(bands[i]).name, q.riskBandName);
            // the band above the threshold holds the suspicious outputs, and only them
            assertEquals("raw " + raw[i], q.suspicious, q.riskBand >= 2);
        }
        Prediction above = Postprocessor.predict(mel(128), c);
        assertEquals(3.0, above.likelihoodRatio, 0.0);
        // post-test odds = prior odds x LR, as melkit.core.probability.post_test_probability
        double odds = 0.05 / 0.95 * 3.0;
        assertEquals(odds / (1 + odds), above.postTestProbability(0.05), 1e-15);
        assertEquals(0.4 * 3 / (0.4 * 3 + 0.6), above.postTestProbability(0.4), 1e-12);
        assertEquals(0.15, Postprocessor.predict(mel(100), ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"),
                ratios(band("a", "0", "0.5", "1"), band("b", "0.5", "1", "1"))))).postTestProbability(0.15), 1e-15);
        Prediction unmeasured = Postprocessor.predict(mel(200), c);
        assertEquals(3, unmeasured.riskBand);
        assertTrue(Double.isNaN(unmeasured.likelihoodRatio) && Double.isNaN(unmeasured.postTestProbability(0.15)));
        // not assessed (out of the guard's domain): no band, whatever its P(mel)
        ModelCard guarded = ModelCard.parse(withRiskBands(cardWithGuard(GUARD), FOUR));
        Prediction out = Postprocessor.predict(mel(128), new byte[] {(byte) 81}, guarded);
        assertFalse(out.hasRiskBand());
        assertEquals(-1, out.riskBand);
        assertTrue(Double.isNaN(out.likelihoodRatio) && Double.isNaN(out.postTestProbability(0.4)));
        assertEquals(2, Postprocessor.predict(mel(128), new byte[] {(byte) 80}, guarded).riskBand);
        // an empty band (low == high) is allowed; an output at its edge is above it
        ModelCard empty = ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"), ratios(band("a", "0", "0.5", "1"),
                band("at", "0.5", "0.5", "null"), band("b", "0.5", "1", "2"))));
        assertEquals(2, empty.riskBand(0.5));
        assertEquals(0, empty.riskBand(0.4999));
        // two bands, split at the threshold: the least a card may hold
        assertEquals(1, ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"),
                ratios(band("a", "0", "0.5", "0.5"), band("b", "0.5", "1", "2")))).riskBand(1.0));
    }

    @Test
    public void riskBandsThatDoNotCoverZeroToOneWithAnEdgeAtTheThresholdAreRefused() {
        String a = band("a", "0", "0.25", "0.1");
        String b = band("b", "0.25", "0.5", "0.6");
        String c = band("c", "0.5", "1", "3");
        String[] refused = {
            ratios(a, band("b", "0.3", "0.5", "0.6"), c),  // a gap between bands
            ratios(a, band("b", "0.2", "0.5", "0.6"), c),  // an overlap
            ratios(band("a", "0.01", "0.25", "0.1"), b, c),  // not from 0
            ratios(a, b, band("c", "0.5", "0.99", "3")),  // not to 1
            ratios(a, b, band("c", "0.5", "1.5", "3")),
            ratios(band("a", "-0.1", "0.25", "0.1"), b, c),
            ratios(a, band("b", "0.25", "0.1", "0.6"), band("c", "0.1", "1", "3")),  // out of order
            ratios(band("a", "0", "0.4", "1"), band("b", "0.4", "1", "1")),  // no edge at the threshold 0.5
            ratios(a, b, band("c", "0.5", "1", "0")),  // lr <= 0
            ratios(a, b, band("c", "0.5", "1", "-2")),
            ratios(a, b, band("c", "0.5", "1", "\"3\"")),
            ratios(a, b, band("c", "0.5", "1", "true")),
            ratios(a, b, "{\"name\":\"c\",\"low\":0.5,\"high\":1}"),  // missing fields
            ratios(a, b, "{\"name\":\"c\",\"low\":0.5,\"lr\":1}"),
            ratios(a, b, "{\"name\":\"c\",\"high\":1,\"lr\":1}"),
            ratios(a, b, "{\"low\":0.5,\"high\":1,\"lr\":1}"),
            ratios(a, b, band("c", "\"0.5\"", "1", "3")),
            ratios(a, b, "[0.5,1,3]"),
            ratios(band("all", "0", "1", "1")),  // one band
            ratios(),
            "{\"bands\":[" + a + "," + b + "," + c + "]}",  // no method
            "{\"method\":\"m\"}",  // no bands
            "{\"method\":\"m\",\"bands\":{}}",
            "[]", "null"};
        for (String r : refused) {
            try {
                ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"), r));
                fail("accepted likelihood_ratios " + r);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("'likelihood_ratios"));
            }
        }
        assertEquals(3, ModelCard.parse(withRiskBands(card("0.5", "melkit-v1"), ratios(a, b, c))).riskBands.size());
        System.out.println("risk bands refused: " + refused.length);
    }

    @Test
    public void aLikelihoodRatioIsShownWithTwoSignificantDigits() {
        String[] want = {"0.052", "0.05", "0.5", "1", "3.1", "12", "150", "1200", "n/a"};
        double[] lr = {0.05234, 0.05, 0.5, 1.0, 3.14159, 12.3, 149.9, 1234.5, Double.NaN};
        for (int i = 0; i < lr.length; i++) {
            assertEquals(want[i], Prediction.ratioText(lr[i]));
        }
    }

    static String cardWithColorConstancy(String value) {
        return card("0.5", "melkit-v1").replace("\"image_size\":4}",
                "\"image_size\":4,\"color_constancy\":" + value + "}");
    }

    @Test
    public void colorConstancyIsOptionalAndOnlyShadesOfGrayIsAccepted() {
        assertNull(ModelCard.parse(card("0.5", "melkit-v1")).colorConstancy);  // absent: off (v1 cards)
        ModelCard sog = ModelCard.parse(cardWithColorConstancy("\"shades_of_gray:p=6\""));
        assertEquals(ContractPreprocessor.SHADES_OF_GRAY, sog.colorConstancy);
        String[] refused = {"\"shades_of_gray:p=2\"", "\"grey_world\"", "\"\"", "null", "6", "true"};
        for (String value : refused) {
            String json = cardWithColorConstancy(value);
            assertTrue(json.contains("\"color_constancy\":" + value));
            try {
                ModelCard.parse(json);
                fail("accepted color_constancy " + value);
            } catch (IllegalArgumentException expected) {
                String message = expected.getMessage();
                assertTrue(message, message.contains("'preprocessing.color_constancy'"));
            }
        }
    }

    @Test
    public void toQAppliesTheCardsColorConstancy() {
        int[] px = new int[16];
        for (int i = 0; i < px.length; i++) {
            px[i] = 0xFF000000 | (200 - i) << 16 | (100 + i) << 8 | (60 + 2 * i);  // a colour cast
        }
        byte[] plain = ContractPreprocessor.resizeToQ(px, 4, 4, 1, 4);
        assertArrayEquals(plain, ContractPreprocessor.toQ(px, 4, 4, 1, ModelCard.parse(card("0.5", "melkit-v1"))));
        byte[] sog = ContractPreprocessor.toQ(px, 4, 4, 1, ModelCard.parse(cardWithColorConstancy(
                "\"shades_of_gray:p=6\"")));
        assertArrayEquals(ContractPreprocessor.shadesOfGray(plain, 6), sog);
        assertFalse(java.util.Arrays.equals(plain, sog));
        try {
            ContractPreprocessor.toQ(px, 4, 4, 1, 4, "grey_world");
            fail("toQ accepted an unknown colour constancy");
        } catch (IllegalArgumentException expected) {
            // refused, never silently skipped
        }
    }

    @Test
    public void aV2CardAppliesTheBoxStepOnTheUprightImage() {
        ModelCard v1 = ModelCard.parse(card("0.5", "melkit-v1"));
        ModelCard v2 = ModelCard.parse(card("0.5", "melkit-v2"));
        assertEquals(1, v1.contractVersion);
        assertEquals(2, v2.contractVersion);
        // 9 wide, 10 tall at size 4: k = 9 / 4 = 2, a 4x5 box image; the last column is dropped.
        int w = 9;
        int h = 10;
        int[] px = new int[w * h];
        for (int i = 0; i < px.length; i++) {
            px[i] = 0xFF000000 | (i * 7 % 256) << 16 | (i * 13 % 256) << 8 | (255 - i);
        }
        assertEquals(2, ContractPreprocessor.boxFactor(w, h, 4));
        assertEquals(1, ContractPreprocessor.boxFactor(w, h, 5));  // short side 9 <= 10: no box
        int[] dims = new int[2];
        int[] boxed = ContractPreprocessor.boxReduce(px, w, h, 1, 2, dims);
        assertArrayEquals(new int[] {4, 5}, dims);
        for (int y = 0; y < 5; y++) {
            for (int x = 0; x < 4; x++) {
                int sum = 0;
                for (int dy = 0; dy < 2; dy++) {
                    for (int dx = 0; dx < 2; dx++) {
                        sum += px[(2 * y + dy) * w + 2 * x + dx] >> 8 & 0xFF;
                    }
                }
                assertEquals((sum + 2) / 4, boxed[y * 4 + x] >> 8 & 0xFF);  // round half up
            }
        }
        byte[] viaCard = ContractPreprocessor.toQ(px, w, h, 1, v2);
        assertArrayEquals(ContractPreprocessor.resizeToQ(boxed, 4, 5, 1, 4), viaCard);
        assertArrayEquals(viaCard, ContractPreprocessor.toQ(px, w, h, 1, 4, null, 2));
        assertFalse(java.util.Arrays.equals(viaCard, ContractPreprocessor.toQ(px, w, h, 1, v1)));
        // Stored sideways (orientation 6): the blocks are those of the upright image.
        int[] size = new int[2];
        int[] stored = new int[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                stored[ExifOrientation.sourceIndex(x, y, h, w, 6)] = px[y * w + x];
            }
        }
        assertArrayEquals(px, ExifOrientation.apply(stored, h, w, 6, size));
        assertArrayEquals(viaCard, ContractPreprocessor.toQ(stored, h, w, 6, v2));
        try {
            ContractPreprocessor.toQ(px, w, h, 1, 4, null, 3);
            fail("toQ accepted contract version 3");
        } catch (IllegalArgumentException expected) {
            // refused, never guessed at
        }
    }

    @Test
    public void shadesOfGrayIdentitiesAndRoot() {
        byte[] grey = new byte[5 * 3];
        byte[] zeroBlue = new byte[5 * 3];
        for (int i = 0; i < 5; i++) {
            for (int c = 0; c < 3; c++) {
                grey[3 * i + c] = (byte) (40 * i + 7);
                zeroBlue[3 * i + c] = (byte) (c == 2 ? 0 : 50 * i + c);
            }
        }
        assertArrayEquals(grey, ContractPreprocessor.shadesOfGray(grey, 6));  // equal channels: unchanged
        assertArrayEquals(zeroBlue, ContractPreprocessor.shadesOfGray(zeroBlue, 6));  // no illuminant: unchanged
        for (double x : new double[] {0.0, 0.125, 1.0, 2.5, 3.0, 100.0, 255.0}) {
            assertEquals(x, ContractPreprocessor.root(x * x * x * x * x * x, 6), 0.0);
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
    public void aFoldedThresholdDecidesOnTheRawOutputAndShowsTheCalibratedProbability() {
        // melkit convert folded threshold 0.6 (logit ln 1.5) into the model: the card's threshold is 0.5
        String folded = card("0.5", "melkit-v1").replace("\"threshold\":0.5,",
                "\"threshold\":0.5,\"threshold_fold\":{\"threshold\":0.6,\"logit\":" + Math.log(1.5)
                        + ",\"method\":\"test\"},");
        ModelCard c = ModelCard.parse(folded);
        assertEquals(0.6, c.foldThreshold, 0.0);
        Prediction mel = Postprocessor.predict(new byte[] {0, (byte) 129}, c);  // raw 129/256 >= 0.5
        assertEquals(Prediction.SUSPICIOUS, mel.decision());
        double raw = 129 * 0.00390625;
        assertEquals(raw, mel.pMel, 0.0);
        assertEquals(raw * 1.5 / (raw * 1.5 + 1 - raw), mel.shownPMel, 1e-15);  // sigmoid(logit(p) + ln 1.5)
        assertEquals(0.6, mel.shownThreshold, 1e-15);
        assertEquals(Prediction.NEVUS_LIKE, Postprocessor.predict(new byte[] {0, (byte) 127}, c).decision());
        assertEquals(0.0, c.shownPMel(0.0), 0.0);
        assertEquals(1.0, c.shownPMel(1.0), 0.0);
        ModelCard plain = ModelCard.parse(card("0.5", "melkit-v1"));
        assertEquals(raw, Postprocessor.predict(new byte[] {0, (byte) 129}, plain).shownPMel, 0.0);
        for (String bad : new String[] {"0.6,\"logit\":1e999", "1.5,\"logit\":0.4", "\"0.6\",\"logit\":0.4"}) {
            try {
                ModelCard.parse(card("0.5", "melkit-v1").replace("\"threshold\":0.5,",
                        "\"threshold\":0.5,\"threshold_fold\":{\"threshold\":" + bad + ",\"method\":\"m\"},"));
                fail("accepted threshold_fold " + bad);
            } catch (IllegalArgumentException expected) {
                // refused, naming the field
            }
        }
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
