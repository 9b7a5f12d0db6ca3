package org.melkit.demo;

import java.nio.ByteBuffer;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import android.app.Activity;
import android.content.ActivityNotFoundException;
import android.content.Intent;
import android.content.SharedPreferences;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.provider.MediaStore;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.CheckBox;
import android.widget.CompoundButton;
import android.widget.ImageView;
import android.widget.Spinner;
import android.widget.TextView;

import org.melkit.core.ContractPreprocessor;
import org.melkit.core.ModelCard;
import org.melkit.core.PhotoPicker;
import org.melkit.core.Prediction;

/**
 * Wires Android to the core: pick (system photo picker where there is one) or capture a photo, classify it
 * off the UI thread, show the result and have TalkBack read it (the result view is a polite live region
 * whose content description is the result as a sentence). All image and model logic lives in
 * org.melkit.core (tested on the JVM) and LiteRtClassifier.
 */
public class MainActivity extends Activity {
    private static final int REQ_PICK = 1;
    private static final int REQ_CAPTURE = 2;
    private static final String PREF_ACCEPTED = "accepted_notice_v1";
    private static final String[] THREADS = {"1", "2", "4"};
    /** The shares of melanoma among the lesions examined at which the details give the post-test probability. */
    private static final double[] PREVALENCES = {0.05, 0.15, 0.40};  // melkit/release/golden.py PREVALENCES

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private ModelCard card;
    private ByteBuffer model;
    private LiteRtClassifier classifier;  // touched only on the worker thread
    private Uri lastImage;
    private volatile int threads = 2;
    private volatile boolean useGpu;

    private TextView modelInfo;
    private TextView result;
    private TextView details;
    private ImageView preview;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        if (state != null) {
            lastImage = state.getParcelable("lastImage");
        }
        if (prefs().getBoolean(PREF_ACCEPTED, false)) {
            showMain();
        } else {
            showFirstRun();
        }
    }

    private SharedPreferences prefs() {
        return getSharedPreferences("melkit", MODE_PRIVATE);
    }

    /** First run: what the app is and is not, acknowledged once before anything else. */
    private void showFirstRun() {
        setContentView(R.layout.first_run);
        findViewById(R.id.accept).setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                prefs().edit().putBoolean(PREF_ACCEPTED, true).apply();
                showMain();
            }
        });
    }

    private void showMain() {
        setContentView(R.layout.activity_main);
        modelInfo = (TextView) findViewById(R.id.model_info);
        result = (TextView) findViewById(R.id.result);
        details = (TextView) findViewById(R.id.details);
        preview = (ImageView) findViewById(R.id.preview);
        ((Button) findViewById(R.id.pick)).setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                pick();
            }
        });
        ((Button) findViewById(R.id.capture)).setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                capture();
            }
        });
        setUpSettings();
        String missing = RuntimeCheck.missing();
        try {
            card = ModelAssets.findCard(getAssets());
            model = ModelAssets.mapModel(getAssets(), card);
            modelInfo.setText(getString(R.string.model_info, card.name, card.version, card.variant,
                    card.imageSize, card.shownPMel(card.threshold)));
        } catch (Exception e) {
            modelInfo.setText(getString(R.string.no_model, e.getMessage()));
        }
        if (missing != null) {
            showResult(getString(R.string.no_runtime, missing), null);
        } else if (lastImage != null && model != null) {
            classify(lastImage);
        }
    }

    private void setUpSettings() {
        Spinner spinner = (Spinner) findViewById(R.id.threads);
        ArrayAdapter<String> adapter = new ArrayAdapter<String>(this, android.R.layout.simple_spinner_item, THREADS);
        adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        spinner.setAdapter(adapter);
        spinner.setSelection(1);
        spinner.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int position, long id) {
                int n = Integer.parseInt(THREADS[position]);
                if (n != threads) {
                    threads = n;
                    settingsChanged();
                }
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        });
        ((CheckBox) findViewById(R.id.gpu)).setOnCheckedChangeListener(new CompoundButton.OnCheckedChangeListener() {
            @Override
            public void onCheckedChanged(CompoundButton button, boolean checked) {
                useGpu = checked;
                settingsChanged();
            }
        });
    }

    /** A new thread count or backend needs a new interpreter; the last image is run again on it. */
    private void settingsChanged() {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                closeClassifier();
            }
        });
        if (lastImage != null && model != null && RuntimeCheck.missing() == null) {
            classify(lastImage);
        }
    }

    /**
     * The system photo picker where the platform has it (no storage permission; only the chosen photo is
     * shared), else any app that offers images (ACTION_GET_CONTENT). Both return the photo's Uri as data.
     */
    private void pick() {
        if (PhotoPicker.available(Build.VERSION.SDK_INT, rExtensionVersion())) {
            try {
                startActivityForResult(new Intent(PhotoPicker.ACTION_PICK_IMAGES).setType("image/*"), REQ_PICK);
                return;
            } catch (ActivityNotFoundException e) {
                // a build without the picker activity: the generic chooser below
            }
        }
        Intent i = new Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE);
        startActivityForResult(Intent.createChooser(i, getString(R.string.pick)), REQ_PICK);
    }

    /**
     * {@code SdkExtensions.getExtensionVersion(Build.VERSION_CODES.R)} (API 30, so by reflection: the app
     * compiles against API 23); 0 before Android 11 or where it cannot be read.
     */
    private static int rExtensionVersion() {
        if (Build.VERSION.SDK_INT < PhotoPicker.SDK_EXTENSIONS) {
            return 0;
        }
        try {
            Object v = Class.forName("android.os.ext.SdkExtensions").getMethod("getExtensionVersion", int.class)
                    .invoke(null, PhotoPicker.SDK_EXTENSIONS);
            return v instanceof Integer ? (Integer) v : 0;
        } catch (Exception e) {
            return 0;
        }
    }

    private void capture() {
        Intent i = new Intent(MediaStore.ACTION_IMAGE_CAPTURE);
        i.putExtra(MediaStore.EXTRA_OUTPUT, CaptureProvider.CAPTURE_URI);
        i.addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION | Intent.FLAG_GRANT_READ_URI_PERMISSION);
        try {
            startActivityForResult(i, REQ_CAPTURE);
        } catch (ActivityNotFoundException e) {
            showResult(getString(R.string.no_camera), null);
        }
    }

    @Override
    protected void onActivityResult(int request, int code, Intent data) {
        super.onActivityResult(request, code, data);
        if (code != RESULT_OK || result == null) {
            return;
        }
        Uri uri = request == REQ_PICK && data != null ? data.getData() : request == REQ_CAPTURE
                ? CaptureProvider.CAPTURE_URI : null;
        if (uri == null) {
            return;
        }
        lastImage = uri;
        String missing = RuntimeCheck.missing();
        if (model == null) {
            showResult(getString(R.string.cannot_classify), null);
        } else if (missing != null) {
            showResult(getString(R.string.no_runtime, missing), null);
        } else {
            classify(uri);
        }
    }

    private void classify(final Uri uri) {
        showResult(getString(R.string.working), null);
        final int nThreads = threads;
        final boolean gpu = useGpu;
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    final ImageLoader.Loaded img = ImageLoader.load(getContentResolver(), uri, card);
                    long t0 = System.nanoTime();
                    byte[] q = ContractPreprocessor.toQ(img.argb, img.width, img.height, img.orientation, card);
                    byte[] input = ContractPreprocessor.encodeInput(q, card.input);
                    final double prepMs = (System.nanoTime() - t0) / 1e6;
                    img.argb = null;
                    if (classifier == null || classifier.threads != nThreads || classifier.gpuRequested != gpu) {
                        closeClassifier();
                        classifier = new LiteRtClassifier(model, card, nThreads, gpu);
                    }
                    final double[] ms = new double[1];
                    final Prediction p = classifier.classify(input, ms);
                    final LiteRtClassifier c = classifier;
                    runOnUiThread(new Runnable() {
                        @Override
                        public void run() {
                            show(img, p, ms[0], prepMs, c);
                        }
                    });
                } catch (final Throwable t) {  // a bad image or model must show a message, not crash
                    runOnUiThread(new Runnable() {
                        @Override
                        public void run() {
                            showResult(getString(R.string.failed, String.valueOf(t.getMessage())), null);
                        }
                    });
                }
            }
        });
    }

    private void show(ImageLoader.Loaded img, Prediction p, double inferMs, double prepMs, LiteRtClassifier c) {
        preview.setImageBitmap(img.preview);
        preview.setContentDescription(getString(R.string.preview_assessed));
        orientPreview(img.orientation);
        // the card's risk band and its likelihood ratio: what the result means whatever the share of melanomas
        // where the app is used (none for an image not assessed, or a card without bands)
        String risk = p.hasRiskBand() ? "\n" + riskText(p, false) : "";
        String riskSpoken = p.hasRiskBand() ? " " + riskText(p, true) : "";
        if (!p.inDomain) {  // no melanoma score for an image that shows no lesion, on screen or spoken
            showResult(getString(R.string.result_not_assessed), getString(R.string.result_not_assessed_spoken));
        } else if (p.borderline) {  // the card's band: the decision, shown as its meaning(), and why it is borderline
            showResult(getString(R.string.result_borderline, 100 * p.shownPMel, 100 * p.shownThreshold,
                            p.meaning()) + risk,
                    getString(R.string.result_borderline_spoken, 100 * p.shownPMel, 100 * p.shownThreshold,
                            p.meaning()) + riskSpoken);
        } else if (p.suspicious) {
            showResult(getString(R.string.result_suspicious, 100 * p.shownPMel, 100 * p.shownThreshold) + risk,
                    getString(R.string.result_suspicious_spoken, 100 * p.shownPMel, 100 * p.shownThreshold)
                            + riskSpoken);
        } else {
            showResult(getString(R.string.result_nevus, 100 * p.shownPMel, 100 * p.shownThreshold) + risk,
                    getString(R.string.result_nevus_spoken, 100 * p.shownPMel, 100 * p.shownThreshold) + riskSpoken);
        }
        String note = c.note.isEmpty() ? "" : "\n" + c.note;
        details.setText(String.format(Locale.ROOT,
                "%s%s\ninference %.1f ms, preprocessing %.1f ms\n%s, %d thread(s)%s\n%s", p.meaning(),
                postTestText(p), inferMs, prepMs, c.backend, c.threads, note, img.decodeNote));
    }

    /**
     * The risk band's line, "<band> — likelihood ratio X", and what the ratio means in plain words, to show
     * ({@code spoken} false) or as sentences for TalkBack; where the card could not measure the ratio, says so.
     */
    private String riskText(Prediction p, boolean spoken) {
        if (Double.isNaN(p.likelihoodRatio)) {
            return getString(spoken ? R.string.risk_band_unmeasured_spoken : R.string.risk_band_unmeasured,
                    p.riskBandName);
        }
        return getString(spoken ? R.string.risk_band_spoken : R.string.risk_band, p.riskBandName,
                Prediction.ratioText(p.likelihoodRatio));
    }

    /** The post-test probability at each of {@link #PREVALENCES}, for the details; empty without a likelihood ratio. */
    private String postTestText(Prediction p) {
        if (Double.isNaN(p.likelihoodRatio)) {  // NaN also when not assessed or the card has no bands
            return "";
        }
        StringBuilder sb = new StringBuilder("\n").append(getString(R.string.post_test_title));
        for (double q : PREVALENCES) {
            sb.append("\n").append(getString(R.string.post_test_at, 100 * q, 100 * p.postTestProbability(q)));
        }
        return sb.toString();
    }

    /**
     * Shows {@code shown} and has accessibility services announce {@code spoken} (the shown text when null):
     * the result view is a polite live region (activity_main.xml), so TalkBack reads it once it changes, and
     * its content description is what it reads.
     */
    private void showResult(String shown, String spoken) {
        result.setText(shown);
        result.setContentDescription(spoken != null ? spoken : shown);
    }

    /** The preview bitmap is stored as decoded; turn the view so it shows upright (the model's input is). */
    private void orientPreview(int o) {
        float rot = o == 3 || o == 4 ? 180f : o == 5 || o == 6 ? 90f : o == 7 || o == 8 ? 270f : 0f;
        boolean mirror = o == 2 || o == 4 || o == 5 || o == 7;
        preview.setRotation(rot);
        preview.setScaleX(mirror ? -1f : 1f);
    }

    private void closeClassifier() {
        if (classifier != null) {
            classifier.close();
            classifier = null;
        }
    }

    @Override
    protected void onSaveInstanceState(Bundle out) {
        super.onSaveInstanceState(out);
        out.putParcelable("lastImage", lastImage);
    }

    @Override
    protected void onDestroy() {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                closeClassifier();
            }
        });
        worker.shutdown();
        super.onDestroy();
    }
}
