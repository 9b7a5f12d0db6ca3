package org.melkit.core;

/**
 * The model's answer for one image: P(mel) and the decision at the card's threshold. With an input-domain
 * guard, also whether the image looks like a dermoscopic lesion image at all: when it does not, the image
 * is not assessed and no melanoma score is to be shown. With a borderline band in the card, an assessed image
 * near the threshold is shown as borderline ({@link #meaning()}); the decision itself stays binary. With risk
 * bands in the card, an assessed image has its band and that band's likelihood ratio ({@link #riskBand}), which
 * give the probability of melanoma for a known prevalence ({@link #postTestProbability}).
 */
public final class Prediction {
    public static final String SUSPICIOUS = "melanoma-suspicious";
    public static final String NEVUS_LIKE = "nevus-like";
    public static final String NOT_ASSESSED = "not assessed";
    /** What {@link #meaning()} puts before the decision of a borderline image. */
    public static final String BORDERLINE = "borderline: ";

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
    /**
     * Assessed and its raw P(mel) in the card's borderline band (ModelCard.isBorderline): rounding in the
     * quantized model may decide it. The decision stays {@link #suspicious}; only {@link #meaning()} differs.
     * False without a band or when not assessed.
     */
    public final boolean borderline;
    /**
     * The risk band of an assessed image (ModelCard.riskBand): its index, name and likelihood ratio P(band |
     * melanoma) / P(band | nevus). -1, null and NaN when not assessed or the card has no bands; the LR is NaN
     * also where the card could not measure it.
     */
    public final int riskBand;
    public final String riskBandName;
    public final double likelihoodRatio;
    private final ModelCard.RiskBand band;

    Prediction(double[] probabilities, double pMel, double threshold) {
        this(probabilities, pMel, threshold, Double.NaN, true);
    }

    Prediction(double[] probabilities, double pMel, double threshold, double domainScore, boolean inDomain) {
        this(probabilities, pMel, threshold, pMel, threshold, domainScore, inDomain);
    }

    Prediction(double[] probabilities, double pMel, double threshold, double shownPMel, double shownThreshold,
               double domainScore, boolean inDomain) {
        this(probabilities, pMel, threshold, shownPMel, shownThreshold, domainScore, inDomain, false);
    }

    /** {@code inBand}: whether pMel lies in the card's borderline band; it counts only for an assessed image. */
    Prediction(double[] probabilities, double pMel, double threshold, double shownPMel, double shownThreshold,
               double domainScore, boolean inDomain, boolean inBand) {
        this(probabilities, pMel, threshold, shownPMel, shownThreshold, domainScore, inDomain, inBand, null);
    }

    /** {@code risk}: pMel's risk band in the card (null without bands); it counts only for an assessed image. */
    Prediction(double[] probabilities, double pMel, double threshold, double shownPMel, double shownThreshold,
               double domainScore, boolean inDomain, boolean inBand, ModelCard.RiskBand risk) {
        this.probabilities = probabilities;
        this.pMel = pMel;
        this.threshold = threshold;
        this.shownPMel = shownPMel;
        this.shownThreshold = shownThreshold;
        this.domainScore = domainScore;
        this.inDomain = inDomain;
        this.suspicious = inDomain && pMel >= threshold;  // as the card says: suspicious when P(mel) >= threshold
        this.borderline = inDomain && inBand;
        this.band = inDomain ? risk : null;
        this.riskBand = band == null ? -1 : band.index;
        this.riskBandName = band == null ? null : band.name;
        this.likelihoodRatio = band == null ? Double.NaN : band.lr;
    }

    /** True for an assessed image of a card with risk bands: {@link #riskBand} is its band. */
    public boolean hasRiskBand() {
        return band != null;
    }

    /**
     * The probability of melanoma after this result where {@code prevalence} of the lesions examined are
     * melanomas (ModelCard.RiskBand.postTestProbability); NaN without a band or without its LR.
     */
    public double postTestProbability(double prevalence) {
        return band == null ? Double.NaN : band.postTestProbability(prevalence);
    }

    /**
     * A likelihood ratio as a person reads it: two significant digits in plain decimals ("0.052", "3.1", "12",
     * "1200"), the same in every locale; "n/a" for NaN.
     */
    public static String ratioText(double lr) {
        if (Double.isNaN(lr) || Double.isInfinite(lr)) {
            return "n/a";
        }
        return new java.math.BigDecimal(lr).round(new java.math.MathContext(2)).stripTrailingZeros().toPlainString();
    }

    /** The binary decision: {@link #SUSPICIOUS}, {@link #NEVUS_LIKE} or {@link #NOT_ASSESSED}. */
    public String decision() {
        return !inDomain ? NOT_ASSESSED : suspicious ? SUSPICIOUS : NEVUS_LIKE;
    }

    /** What to show: the decision, after {@link #BORDERLINE} for a borderline image ("borderline: nevus-like"). */
    public String meaning() {
        return borderline ? BORDERLINE + decision() : decision();
    }
}
