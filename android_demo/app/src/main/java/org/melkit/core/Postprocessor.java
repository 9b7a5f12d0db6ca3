package org.melkit.core;

/**
 * Model output bytes to scores, P(mel), the decision, whether it is borderline and its risk band, the way
 * melkit.litert and the card (ModelCard.is_borderline, ModelCard.risk_band) read them in Python.
 */
public final class Postprocessor {
    private Postprocessor() {
    }

    /** Dequantized scores in double, {@code (raw - zero_point) * scale} as numpy computes it in float64. */
    public static double[] scores(byte[] raw, TensorSpec output) {
        if (raw.length != output.numBytes()) {
            throw new IllegalArgumentException(raw.length + " bytes for output " + output);
        }
        double[] out = new double[output.elements()];
        for (int i = 0; i < out.length; i++) {
            double v;
            if (output.dtype.equals("uint8")) {
                v = raw[i] & 0xFF;
            } else if (output.dtype.equals("int8")) {
                v = raw[i];
            } else {
                int bits = (raw[4 * i] & 0xFF) | (raw[4 * i + 1] & 0xFF) << 8 | (raw[4 * i + 2] & 0xFF) << 16
                        | (raw[4 * i + 3] & 0xFF) << 24;
                v = Float.intBitsToFloat(bits);
            }
            out[i] = output.scale > 0 ? (v - output.zeroPoint) * output.scale : v;
        }
        return out;
    }

    /** The prediction of a model without a domain guard. */
    public static Prediction predict(byte[] raw, ModelCard card) {
        if (card.hasDomainGuard()) {
            throw new IllegalArgumentException("the card has a domain guard: pass its output too");
        }
        double[] s = scores(raw, card.output);
        double p = s[card.melIndex];
        return new Prediction(s, p, card.threshold, card.shownPMel(p), card.shownPMel(card.threshold), Double.NaN,
                true, card.isBorderline(p), band(card, p));
    }

    /**
     * The prediction of a model with a domain guard: {@code domainRaw} is its second output's bytes. In the
     * model's domain when the score is at most the card's domain threshold (a NaN score is not).
     */
    public static Prediction predict(byte[] raw, byte[] domainRaw, ModelCard card) {
        if (!card.hasDomainGuard()) {
            return predict(raw, card);
        }
        double[] s = scores(raw, card.output);
        double score = scores(domainRaw, card.domainOutput)[0];
        double p = s[card.melIndex];
        return new Prediction(s, p, card.threshold, card.shownPMel(p), card.shownPMel(card.threshold), score,
                score <= card.domainThreshold, card.isBorderline(p), band(card, p));
    }

    /** The card's risk band of the raw P(mel) {@code p}; null without bands (or for NaN). */
    static ModelCard.RiskBand band(ModelCard card, double p) {
        int k = card.riskBand(p);
        return k < 0 ? null : card.riskBands.get(k);
    }
}
