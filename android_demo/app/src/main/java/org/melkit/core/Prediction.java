package org.melkit.core;

/**
 * The model's answer for one image: P(mel) and the decision at the card's threshold. With an input-domain
 * guard, also whether the image looks like a dermoscopic lesion image at all: when it does not, the image
 * is not assessed and no melanoma score is to be shown.
 */
public final class Prediction {
    public static final String SUSPICIOUS = "melanoma-suspicious";
    public static final String NEVUS_LIKE = "nevus-like";
    public static final String NOT_ASSESSED = "not assessed";

    public final double[] probabilities;
    /** The model's raw P(mel): what the decision compares with {@link #threshold}. */
    public final double pMel;
    public final double threshold;
    /**
     * The P(mel) to show a person (ModelCard.shownPMel: unfolded, then tempered) and the threshold on that
     * scale; equal to {@link #pMel} and {@link #threshold} for a card without threshold_fold or temperature.
     */
    public final double shownPMel;
    public final double shownThreshold;
    /** Melanoma-suspicious: P(mel) >= threshold, for an image in the model's domain. */
    public final boolean suspicious;
    /** The guard's score; NaN without a guard. */
    public final double domainScore;
    /** False only when the model has a guard and the image is out of its domain (NaN scores included). */
    public final boolean inDomain;

    Prediction(double[] probabilities, double pMel, double threshold) {
        this(probabilities, pMel, threshold, Double.NaN, true);
    }

    Prediction(double[] probabilities, double pMel, double threshold, double domainScore, boolean inDomain) {
        this(probabilities, pMel, threshold, pMel, threshold, domainScore, inDomain);
    }

    Prediction(double[] probabilities, double pMel, double threshold, double shownPMel, double shownThreshold,
               double domainScore, boolean inDomain) {
        this.probabilities = probabilities;
        this.pMel = pMel;
        this.threshold = threshold;
        this.shownPMel = shownPMel;
        this.shownThreshold = shownThreshold;
        this.domainScore = domainScore;
        this.inDomain = inDomain;
        this.suspicious = inDomain && pMel >= threshold;  // as the card says: suspicious when P(mel) >= threshold
    }

    public String decision() {
        return !inDomain ? NOT_ASSESSED : suspicious ? SUSPICIOUS : NEVUS_LIKE;
    }
}
