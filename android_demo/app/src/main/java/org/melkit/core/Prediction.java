package org.melkit.core;

/** The model's answer for one image: P(mel) and the decision at the card's threshold. */
public final class Prediction {
    public static final String SUSPICIOUS = "melanoma-suspicious";
    public static final String NEVUS_LIKE = "nevus-like";

    public final double[] probabilities;
    public final double pMel;
    public final double threshold;
    public final boolean suspicious;

    Prediction(double[] probabilities, double pMel, double threshold) {
        this.probabilities = probabilities;
        this.pMel = pMel;
        this.threshold = threshold;
        this.suspicious = pMel >= threshold;  // as the card says: suspicious when P(mel) >= threshold
    }

    public String decision() {
        return suspicious ? SUSPICIOUS : NEVUS_LIKE;
    }
}
