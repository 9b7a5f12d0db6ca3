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
 */
public final class ModelCard {
    public static final String CONTRACT = "melkit-v1";

    public final String name;
    public final String version;
    public final String variant;
    public final String modelFile;
    public final String sha256;
    public final List<String> labels;
    public final int melIndex;
    public final double threshold;
    public final int imageSize;
    public final TensorSpec input;
    public final TensorSpec output;
    public final String notice;

    private ModelCard(JSONObject o) throws JSONException {
        if (o.optInt("melkit_card", -1) != 1) {
            throw new IllegalArgumentException("not a melkit model card (version 1)");
        }
        name = o.getString("name");
        version = o.getString("version");
        variant = o.optString("variant", "");
        modelFile = o.getString("model_file");
        sha256 = o.getString("sha256").toLowerCase(java.util.Locale.ROOT);
        JSONArray l = o.getJSONArray("labels");
        List<String> ls = new ArrayList<String>();
        for (int i = 0; i < l.length(); i++) {
            ls.add(l.getString(i));
        }
        labels = Collections.unmodifiableList(ls);
        melIndex = ls.indexOf("mel");
        threshold = o.getDouble("threshold");
        JSONObject p = o.getJSONObject("preprocessing");
        imageSize = p.getInt("image_size");
        input = TensorSpec.fromJson(o.getJSONObject("input"));
        output = TensorSpec.fromJson(o.getJSONObject("output"));
        notice = o.optString("not_a_medical_device", "");
        if (!CONTRACT.equals(p.optString("name")) || p.getDouble("mean") != 128.0 || p.getDouble("std") != 128.0) {
            throw new IllegalArgumentException("preprocessing is not the " + CONTRACT + " contract");
        }
        int[] s = input.shape;
        if (s.length != 4 || s[0] != 1 || s[1] != imageSize || s[2] != imageSize || s[3] != 3) {
            throw new IllegalArgumentException("input " + input + " does not fit image size " + imageSize);
        }
        if (melIndex < 0 || output.shape[output.shape.length - 1] != ls.size() || output.elements() != ls.size()) {
            throw new IllegalArgumentException("output " + output + " does not fit labels " + ls);
        }
        if (!(threshold >= 0 && threshold <= 1)) {
            throw new IllegalArgumentException("threshold " + threshold + " is not a probability");
        }
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
