package org.melkit.demo;

import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;

import org.melkit.core.ModelCard;

/** The model that {@code melkit bundle} put into the assets: its card and the memory-mapped .tflite. */
final class ModelAssets {
    private ModelAssets() {
    }

    /** The one melkit card in the assets; IOException with a readable reason otherwise. */
    static ModelCard findCard(AssetManager assets) throws IOException {
        String[] names = assets.list("");
        ModelCard found = null;
        for (String name : names == null ? new String[0] : names) {
            if (!name.endsWith(".json")) {
                continue;
            }
            String text = readText(assets, name);
            if (!text.contains("\"melkit_card\"")) {
                continue;
            }
            if (found != null) {
                throw new IOException("more than one model card in the assets");
            }
            found = ModelCard.parse(text);
        }
        if (found == null) {
            throw new IOException("no model bundled: run `melkit bundle MODEL.tflite --app android_demo`");
        }
        return found;
    }

    /** The model, mapped from the APK (it is stored uncompressed for this) and checked against its card. */
    static ByteBuffer mapModel(AssetManager assets, ModelCard card) throws IOException {
        AssetFileDescriptor fd = assets.openFd(card.modelFile);  // fails if the asset was compressed
        FileInputStream in = new FileInputStream(fd.getFileDescriptor());
        try {
            FileChannel ch = in.getChannel();
            MappedByteBuffer model = ch.map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
            if (!card.sha256.equals(sha256(model.duplicate()))) {
                throw new IOException(card.modelFile + " does not match its card (sha256)");
            }
            return model;
        } finally {
            in.close();
            fd.close();
        }
    }

    private static String sha256(ByteBuffer data) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(data);
            StringBuilder sb = new StringBuilder();
            for (byte b : md.digest()) {
                sb.append(Character.forDigit(b >> 4 & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
            }
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String readText(AssetManager assets, String name) throws IOException {
        InputStream in = assets.open(name);
        try {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[8192];
            int n;
            while ((n = in.read(chunk)) > 0) {
                buf.write(chunk, 0, n);
            }
            return new String(buf.toByteArray(), StandardCharsets.UTF_8);
        } finally {
            in.close();
        }
    }
}
