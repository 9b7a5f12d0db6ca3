package org.melkit.core;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The model card ({@code <model>.json} beside the .tflite, written by melkit convert). The app trusts
 * nothing else about the model, so everything it relies on is checked here, and a card the core could
 * not follow exactly (another preprocessing contract, odd shapes) is refused rather than guessed at.
 * Every field the card format requires (melkit/core/model_card.schema.json) is read, present and of its
 * type, and a refusal names the field (CardSchemaTest checks this against the schema).
 */
public final class ModelCard {
    /** The contracts this core implements: v1, and v2 (a box filter before the resize, for large photos). */
    public static final String CONTRACT = "melkit-v1";
    public static final String CONTRACT_V2 = "melkit-v2";

    public final String name;
    public final String version;
    public final String variant;
    public final String modelFile;
    public final String sha256;
    public final long sizeBytes;
    public final List<String> labels;
    public final String labelsFile;
    public final int melIndex;
    public final double threshold;
    public final String thresholdPolicy;
    public final String decision;
    public final int imageSize;
    /** The preprocessing contract's version: 1 ({@link #CONTRACT}) or 2 ({@link #CONTRACT_V2}). */
    public final int contractVersion;
    /** The optional step 3b, {@link ContractPreprocessor#SHADES_OF_GRAY}, or null (absent: none). */
    public final String colorConstancy;
    public final TensorSpec input;
    public final TensorSpec output;
    public final String outputMeaning;
    public final String notice;
    /**
     * The optional input-domain guard (melkit convert --domain-guard): the model's second output, a score of
     * how far the image is from the dermoscopic images it was trained on; null without a guard.
     */
    public final TensorSpec domainOutput;
    /** Where the guard output is among the model's outputs (1: after the probabilities); -1 without a guard. */
    public final int domainOutputIndex;
    /** In the model's domain when the domain score is at most this; NaN without a guard. */
    public final double domainThreshold;
    /**
     * The logit melkit convert folded into the model (card field threshold_fold: the model's top category is
     * then melkit's decision and {@link #threshold} is 0.5); 0 when not folded. See {@link #shownPMel}.
     */
    public final double foldLogit;
    /** The trained threshold that was folded in (threshold_fold.threshold); NaN when not folded. */
    public final double foldThreshold;
    /** melkit calibrate's display temperature (calibration.temperature); NaN without one. */
    public final double temperature;
    /** P(mel) is clipped to [logitClip, 1 - logitClip] before the temperature's logit. */
    public final double logitClip;
    /**
     * The optional borderline band (card field borderline, written by melkit convert for a quantized variant):
     * an assessed image whose raw P(mel) lies in [borderlineLow, borderlineHigh] is borderline, as rounding
     * may decide it (see {@link #isBorderline}); both NaN without a band. On the scale of {@link #threshold}.
     */
    public final double borderlineLow;
    public final double borderlineHigh;
    /**
     * The optional risk bands (card field likelihood_ratios, melkit/core/likelihood.py): contiguous bands of the
     * raw P(mel) from 0 to 1, one edge at {@link #threshold}, each with its likelihood ratio P(band | melanoma) /
     * P(band | nevus) measured on validation. Unlike P(mel), a likelihood ratio holds whatever the prevalence of
     * melanoma where the app is used. Empty without the field; see {@link #riskBand}.
     */
    public final List<RiskBand> riskBands;

    /** One risk band of the card: raw P(mel) in [low, high), the last band up to and including 1. */
    public static final class RiskBand {
        /** Its position among the card's bands (0: the lowest outputs). */
        public final int index;
        public final String name;
        public final double low;
        public final double high;
        /** P(band | melanoma) / P(band | nevus); NaN where it could not be measured (null in the card). */
        public final double lr;

        RiskBand(int index, String name, double low, double high, double lr) {
            this.index = index;
            this.name = name;
            this.low = low;
            this.high = high;
            this.lr = lr;
        }

        /**
         * The probability of melanoma after a result in this band where {@code prevalence} of the lesions
         * examined are melanomas: post-test odds = prior odds x LR, as melkit.core.probability.post_test_probability
         * computes it; NaN without an LR.
         */
        public double postTestProbability(double prevalence) {
            double odds = prevalence / (1.0 - prevalence) * lr;
            return odds / (1.0 + odds);
        }

        @Override
        public String toString() {
            return name + " [" + low + ", " + high + ") LR " + lr;
        }
    }

    /** Free-form records the app only shows or ignores; required all the same (model_card.schema.json). */
    static final String[] RECORDS = {"source_run", "training_data", "validation", "selfcheck", "versions"};

    private ModelCard(JSONObject o) throws JSONException {
        Object v = o.opt("melkit_card");
        if (!isInteger(v) || ((Number) v).longValue() != 1) {
            throw new IllegalArgumentException("not a melkit model card (version 1)");
        }
        name = string(o, "", "name");
        version = string(o, "", "version");
        variant = string(o, "", "variant");
        modelFile = string(o, "", "model_file");
        sha256 = string(o, "", "sha256").toLowerCase(java.util.Locale.ROOT);
        sizeBytes = integer(o, "", "size_bytes");
        JSONArray l = array(o, "", "labels");
        List<String> ls = new ArrayList<String>();
        for (int i = 0; i < l.length(); i++) {
            if (!(l.get(i) instanceof String)) {
                throw new IllegalArgumentException("model card field 'labels[" + i + "]' must be a string");
            }
            ls.add(l.getString(i));
        }
        labels = Collections.unmodifiableList(ls);
        labelsFile = string(o, "", "labels_file");
        melIndex = ls.indexOf("mel");
        threshold = number(o, "", "threshold");
        thresholdPolicy = string(o, "", "threshold_policy");
        decision = string(o, "", "decision");
        JSONObject p = object(o, "", "preprocessing");
        String contract = string(p, "preprocessing", "name");
        for (String key : new String[] {"color", "resize", "rounding", "scale"}) {
            string(p, "preprocessing", key);
        }
        double mean = number(p, "preprocessing", "mean");
        double std = number(p, "preprocessing", "std");
        JSONObject iq = object(p, "preprocessing", "input_quantization");
        string(iq, "preprocessing.input_quantization", "dtype");
        number(iq, "preprocessing.input_quantization", "scale");
        integer(iq, "preprocessing.input_quantization", "zero_point");
        imageSize = (int) integer(p, "preprocessing", "image_size");
        contractVersion = CONTRACT_V2.equals(contract) ? 2 : 1;
        colorConstancy = colorConstancy(p);
        input = TensorSpec.fromJson(object(o, "", "input"), "input");
        JSONObject out = object(o, "", "output");
        output = TensorSpec.fromJson(out, "output");
        outputMeaning = string(out, "output", "meaning");
        for (String key : RECORDS) {
            object(o, "", key);
        }
        notice = string(o, "", "not_a_medical_device");
        if (o.has("domain_guard")) {
            JSONObject g = object(o, "", "domain_guard");
            JSONObject go = object(g, "domain_guard", "output");
            domainOutput = TensorSpec.fromJson(go, "domain_guard.output");
            domainOutputIndex = (int) integer(go, "domain_guard.output", "index");
            domainThreshold = number(g, "domain_guard", "threshold");
            string(g, "domain_guard", "method");
            if (domainOutputIndex != 1 || domainOutput.elements() != 1) {
                throw new IllegalArgumentException("domain guard output " + domainOutput + " at index "
                        + domainOutputIndex + " is not the one score after the probabilities this app reads");
            }
            if (Double.isNaN(domainThreshold) || Double.isInfinite(domainThreshold)) {
                throw new IllegalArgumentException("domain guard threshold " + domainThreshold + " is not finite");
            }
        } else {
            domainOutput = null;
            domainOutputIndex = -1;
            domainThreshold = Double.NaN;
        }
        if (o.has("threshold_fold")) {
            JSONObject f = object(o, "", "threshold_fold");
            foldThreshold = number(f, "threshold_fold", "threshold");
            foldLogit = number(f, "threshold_fold", "logit");
            string(f, "threshold_fold", "method");
            if (!(foldThreshold > 0 && foldThreshold < 1) || Double.isNaN(foldLogit) || Double.isInfinite(foldLogit)) {
                throw new IllegalArgumentException("threshold_fold " + foldThreshold + " / logit " + foldLogit
                        + " is not a threshold in (0, 1) with a finite logit");
            }
        } else {
            foldThreshold = Double.NaN;
            foldLogit = 0;
        }
        double t = Double.NaN;
        double clip = output.scale > 0 && !output.dtype.equals("float32") ? output.scale / 2 : 1e-6;
        if (o.has("calibration")) {
            JSONObject c = object(o, "", "calibration");
            Object tv = c.opt("temperature");
            if (tv instanceof Number) {
                t = ((Number) tv).doubleValue();
            }
            JSONObject fit = c.optJSONObject("temperature_fit");
            if (fit != null && fit.opt("logit_clip") instanceof Number) {
                clip = ((Number) fit.opt("logit_clip")).doubleValue();
            }
        }
        temperature = t;
        logitClip = clip;
        if (!(CONTRACT.equals(contract) || CONTRACT_V2.equals(contract)) || mean != 128.0 || std != 128.0) {
            throw new IllegalArgumentException("preprocessing " + contract + " is not a contract this app implements ("
                    + CONTRACT + " or " + CONTRACT_V2 + ")");
        }
        int[] s = input.shape;
        if (s.length != 4 || s[0] != 1 || s[1] != imageSize || s[2] != imageSize || s[3] != 3) {
            throw new IllegalArgumentException("input " + input + " does not fit image size " + imageSize);
        }
        if (melIndex < 0 || output.shape[output.shape.length - 1] != ls.size() || output.elements() != ls.size()) {
            throw new IllegalArgumentException("output " + output + " does not fit labels " + ls);
        }
        // 0 or 1 would call every image one class: refused, as melkit (ModelCard.from_json) refuses it.
        if (!(threshold > 0 && threshold < 1)) {
            throw new IllegalArgumentException("model card field 'threshold' must be a probability strictly "
                    + "between 0 and 1 (0 or 1 calls every image one class), not " + threshold);
        }
        if (o.has("borderline")) {  // read as melkit (card.py _borderline) reads it; the rest is free-form
            JSONObject b = object(o, "", "borderline");
            double low = number(b, "borderline", "low");
            double high = number(b, "borderline", "high");
            string(b, "borderline", "method");
            // false for NaN; an infinity is outside [0, 1]
            if (!(0.0 <= low && low <= threshold && threshold <= high && high <= 1.0)) {
                throw new IllegalArgumentException("model card field 'borderline' must hold 0 <= low <= threshold "
                        + "<= high <= 1, not low " + low + ", threshold " + threshold + ", high " + high);
            }
            borderlineLow = low;
            borderlineHigh = high;
        } else {
            borderlineLow = Double.NaN;
            borderlineHigh = Double.NaN;
        }
        riskBands = Collections.unmodifiableList(riskBands(o, threshold));
    }

    /**
     * The optional likelihood_ratios, read and checked as melkit (card.py _likelihood_ratios) reads them: at
     * least 2 bands, each with a name, low, high and an LR (positive, or null); contiguous (each low the band
     * before's high), from exactly 0 to exactly 1 in order, one edge at the threshold. The rest is free-form.
     */
    static List<RiskBand> riskBands(JSONObject o, double threshold) throws JSONException {
        String where = "likelihood_ratios";
        if (!o.has(where)) {
            return new ArrayList<RiskBand>();
        }
        JSONObject r = object(o, "", where);
        string(r, where, "method");
        JSONArray a = array(r, where, "bands");
        if (a.length() < 2) {
            throw new IllegalArgumentException("model card field '" + where + ".bands' must hold at least 2 bands, "
                    + "not " + a.length());
        }
        List<RiskBand> bands = new ArrayList<RiskBand>();
        double[] edges = new double[a.length() + 1];
        for (int k = 0; k < a.length(); k++) {
            String at = where + ".bands[" + k + "]";
            if (!(a.get(k) instanceof JSONObject)) {
                throw new IllegalArgumentException("model card field '" + at + "' must be an object");
            }
            JSONObject b = a.getJSONObject(k);
            String bandName = string(b, at, "name");
            double low = number(b, at, "low");
            double high = number(b, at, "high");
            Object lv = field(b, at, "lr");
            double lr = Double.NaN;
            if (!(lv == null || JSONObject.NULL.equals(lv))) {
                if (!(lv instanceof Number)) {
                    throw wrongType(at, "lr", "a number or null");
                }
                lr = ((Number) lv).doubleValue();
                if (!(lr > 0 && lr < Double.POSITIVE_INFINITY)) {  // false for NaN
                    throw new IllegalArgumentException("model card field '" + at + ".lr' must be a positive number "
                            + "or null, not " + lr);
                }
            }
            if (k > 0 && !(low == edges[k])) {  // exactly: the bands share their edges
                throw new IllegalArgumentException("model card field '" + at + ".low' must equal the band before's "
                        + "high (" + edges[k] + "), not " + low);
            }
            edges[k] = low;
            edges[k + 1] = high;
            bands.add(new RiskBand(k, bandName, low, high, lr));
        }
        boolean ordered = edges[0] == 0.0 && edges[edges.length - 1] == 1.0;
        boolean atThreshold = false;
        for (int i = 0; i < edges.length; i++) {
            ordered &= i == 0 || edges[i] >= edges[i - 1];  // false for NaN
            atThreshold |= edges[i] == threshold;
        }
        if (!ordered) {
            throw new IllegalArgumentException("model card field '" + where + ".bands' must run from 0 to 1 in order, "
                    + "not " + java.util.Arrays.toString(edges));
        }
        if (!atThreshold) {
            throw new IllegalArgumentException("model card field '" + where + ".bands' must have an edge at the "
                    + "threshold " + threshold);
        }
        return bands;
    }

    // Reading one field: present and of its JSON type, else an IllegalArgumentException naming it. Type
    // tests rather than org.json's coercing getters (getString gives "3" for 3): the card is a contract.

    static Object field(JSONObject o, String where, String key) {
        String path = where.isEmpty() ? key : where + "." + key;
        if (!o.has(key)) {
            throw new IllegalArgumentException("model card field '" + path + "' is missing");
        }
        return o.opt(key);
    }

    static IllegalArgumentException wrongType(String where, String key, String type) {
        String path = where.isEmpty() ? key : where + "." + key;
        return new IllegalArgumentException("model card field '" + path + "' must be " + type);
    }

    static boolean isInteger(Object v) {
        return v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte
                || v instanceof java.math.BigInteger;
    }

    /** Field {@code key} as an instance of {@code cls}; refused naming the field and {@code type} if not. */
    static <T> T typed(JSONObject o, String where, String key, Class<T> cls, String type) {
        Object v = field(o, where, key);
        if (!cls.isInstance(v)) {
            throw wrongType(where, key, type);
        }
        return cls.cast(v);
    }

    static String string(JSONObject o, String where, String key) {
        return typed(o, where, key, String.class, "a string");
    }

    static double number(JSONObject o, String where, String key) {
        return typed(o, where, key, Number.class, "a number").doubleValue();
    }

    static long integer(JSONObject o, String where, String key) {
        Object v = field(o, where, key);
        if (!isInteger(v)) {
            throw wrongType(where, key, "an integer");
        }
        return ((Number) v).longValue();
    }

    static JSONObject object(JSONObject o, String where, String key) {
        return typed(o, where, key, JSONObject.class, "an object");
    }

    /** An object or JSON null (then Java null); missing is refused all the same. */
    static JSONObject objectOrNull(JSONObject o, String where, String key) {
        Object v = field(o, where, key);
        if (v == null || JSONObject.NULL.equals(v)) {
            return null;
        }
        if (!(v instanceof JSONObject)) {
            throw wrongType(where, key, "an object or null");
        }
        return (JSONObject) v;
    }

    static JSONArray array(JSONObject o, String where, String key) {
        return typed(o, where, key, JSONArray.class, "an array");
    }

    /**
     * The optional {@code preprocessing.color_constancy}: null when absent, else the one step this core
     * implements; any other value (JSON null included, as the schema allows only the string) is refused.
     */
    static String colorConstancy(JSONObject p) {
        if (!p.has("color_constancy")) {
            return null;
        }
        Object v = p.opt("color_constancy");
        if (!(v instanceof String)) {
            throw wrongType("preprocessing", "color_constancy", "\"" + ContractPreprocessor.SHADES_OF_GRAY
                    + "\" or absent");
        }
        if (!ContractPreprocessor.SHADES_OF_GRAY.equals(v)) {
            throw new IllegalArgumentException("model card field 'preprocessing.color_constancy' is \"" + v
                    + "\", not one this app implements (" + ContractPreprocessor.SHADES_OF_GRAY + ")");
        }
        return (String) v;
    }

    /**
     * The probability shown to a person for the model's raw P(mel), as melkit/core/probability.py computes it:
     * unfolded ({@code sigmoid(logit(p) + foldLogit)}, on the odds so that 0 and 1 stay) when the threshold was
     * folded in, then {@code sigmoid(logit(p) / temperature)} when melkit calibrate fitted one. The decision
     * never uses it: it compares the raw P(mel) with {@link #threshold}.
     */
    public double shownPMel(double pMel) {
        double p = pMel;
        if (foldLogit != 0) {
            double odds = p * Math.exp(foldLogit);
            p = odds / (odds + (1.0 - p));
        }
        if (!Double.isNaN(temperature)) {
            double q = Math.min(Math.max(p, logitClip), 1.0 - logitClip);
            p = 1.0 / (1.0 + Math.exp(-(Math.log(q) - Math.log1p(-q)) / temperature));
        }
        return p;
    }

    /** True when the model has an input-domain guard (a second output the app must read). */
    public boolean hasDomainGuard() {
        return domainOutput != null;
    }

    /** True when the card has a borderline band (card field borderline). */
    public boolean hasBorderline() {
        return !Double.isNaN(borderlineLow);
    }

    /**
     * Whether the raw P(mel) {@code pMel} lies in the card's borderline band, edges included, as melkit's
     * ModelCard.is_borderline says; false without a band (and for NaN). Whether the image was assessed at all
     * is the caller's (Prediction.borderline).
     */
    public boolean isBorderline(double pMel) {
        return hasBorderline() && pMel >= borderlineLow && pMel <= borderlineHigh;
    }

    /** True when the card has risk bands with likelihood ratios (card field likelihood_ratios). */
    public boolean hasRiskBands() {
        return !riskBands.isEmpty();
    }

    /**
     * The index of the risk band holding the raw P(mel) {@code pMel}, as melkit's ModelCard.risk_band says
     * (numpy searchsorted side="right" over the inner edges): band k holds low <= pMel < high, an output at an
     * inner edge is in the band above it, 1 (and above) in the last band, 0 (and below) in the first. -1 without
     * bands, and for NaN (no band to show for an output that is no number). Whether the image was assessed at
     * all is the caller's (Prediction.riskBand).
     */
    public int riskBand(double pMel) {
        if (riskBands.isEmpty() || Double.isNaN(pMel)) {
            return -1;
        }
        int k = 0;
        for (int i = 1; i < riskBands.size(); i++) {  // how many inner edges are at most pMel
            k += riskBands.get(i).low <= pMel ? 1 : 0;
        }
        return k;
    }

    /** Parses and checks a card; IllegalArgumentException says what is wrong with it. */
    public static ModelCard parse(String json) {
        try {
            return new ModelCard(new JSONObject(json));
        } catch (JSONException e) {
            throw new IllegalArgumentException("bad model card: " + e.getMessage(), e);
        }
    }

    /** True when {@code model} is the file this card describes. */
    public boolean matches(byte[] model) {
        return sha256.equals(sha256Hex(model));
    }

    public static String sha256Hex(byte[] data) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(data);
            StringBuilder sb = new StringBuilder();
            for (byte b : h) {
                sb.append(String.format(java.util.Locale.ROOT, "%02x", b & 0xFF));
            }
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);  // every Java platform has SHA-256
        }
    }
}
