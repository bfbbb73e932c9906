package org.mobclf.demo;

import android.app.Activity;
import android.content.pm.PackageManager;
import android.content.res.AssetManager;
import android.graphics.Color;
import android.graphics.Typeface;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.text.SpannableStringBuilder;
import android.text.Spanned;
import android.text.style.ForegroundColorSpan;
import android.text.style.RelativeSizeSpan;
import android.text.style.StyleSpan;
import android.util.TypedValue;
import android.view.Gravity;
import android.view.View;
import android.view.ViewGroup;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.HorizontalScrollView;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.Spinner;
import android.widget.TextView;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.mobclf.core.Cascade;
import org.mobclf.core.DeviceBundle;
import org.mobclf.core.LabelScore;

/**
 * The on-phone demo: pick a bundle (shipped in the APK under assets/bundles/NAME/, or pushed to
 * getExternalFilesDir(null)/bundles/NAME/), type or pick a headline, classify it with the bundle's .pte in
 * ExecuTorch and see the labels, their probabilities and the time it took. A directory with a cascade.json (made by
 * {@code mobclf cascade}) loads both of its models: the fast one answers, the accurate one when {@link Cascade}
 * escalates the text, and the result says which. Plain Android views, no AndroidX.
 */
public class MainActivity extends Activity {

    private static final String[] SAMPLES = {
        "央行宣布下调存款准备金率0.5个百分点，释放长期资金约1万亿元",
        "国足主场2比0战胜对手，世预赛出线形势好转",
        "苹果发布新款手机，搭载自研芯片，售价5999元起",
        "教育部：今年高考报名人数再创新高",
        "Oil prices jump as OPEC agrees to cut crude output",
        "Fed raises interest rates by a quarter point; dollar firms",
        "Wheat and corn exports to the Soviet Union rise, USDA says",
        "Company reports first-quarter net profit up 12 pct, raises dividend",
    };
    private static final int BELOW_THRESHOLD_SHOWN = 3;
    private static final int COLOR_PREDICTED = Color.rgb(0x1B, 0x7F, 0x3B);
    private static final int COLOR_BELOW = Color.rgb(0x75, 0x75, 0x75);
    private static final int COLOR_ERROR = Color.rgb(0xB0, 0x20, 0x20);

    /** A bundle the app can offer: its name, where it comes from, and its directory once on disk. */
    private static final class BundleEntry {
        final String name;
        final boolean inApk;
        final File directory;

        BundleEntry(String name, boolean inApk, File directory) {
            this.name = name;
            this.inApk = inApk;
            this.directory = directory;
        }

        @Override
        public String toString() {
            return inApk ? name : name + " (external)";
        }
    }

    private final Handler ui = new Handler(Looper.getMainLooper());
    /** Copying, loading and inference run here, one job at a time, off the UI thread. */
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final List<BundleEntry> entries = new ArrayList<BundleEntry>();

    // touched only on the worker thread
    private DeviceBundle bundle;  // the bundle, or the cascade's fast one
    private Cascade cascade;  // null for a plain bundle
    private PteClassifier classifier;  // runs bundle
    private PteClassifier accurate;  // runs the cascade's accurate bundle
    private String runtimeError;

    private Spinner modelSpinner;
    private TextView modelInfo;
    private EditText input;
    private Button classifyButton;
    private TextView result;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(buildLayout());
        findBundles();
        ArrayAdapter<BundleEntry> adapter = new ArrayAdapter<BundleEntry>(this,
                android.R.layout.simple_spinner_item, entries);
        adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        modelSpinner.setAdapter(adapter);
        if (entries.isEmpty()) {
            File external = getExternalFilesDir(null);
            modelInfo.setText(getString(R.string.no_bundles,
                    new File(external == null ? getFilesDir() : external, "bundles").getPath()));
            modelInfo.setTextColor(COLOR_ERROR);
            classifyButton.setEnabled(false);
        }
        modelSpinner.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int position, long id) {
                select(entries.get(position));
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        });
        classifyButton.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                classify(input.getText().toString());
            }
        });
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

    // ---------------------------------------------------------------- layout

    private int dp(float value) {
        return Math.round(TypedValue.applyDimension(TypedValue.COMPLEX_UNIT_DIP, value,
                getResources().getDisplayMetrics()));
    }

    private TextView label(String text) {
        TextView view = new TextView(this);
        view.setText(text);
        view.setTypeface(Typeface.DEFAULT_BOLD);
        view.setPadding(0, dp(12), 0, dp(4));
        return view;
    }

    private View buildLayout() {
        LinearLayout column = new LinearLayout(this);
        column.setOrientation(LinearLayout.VERTICAL);
        column.setPadding(dp(16), dp(8), dp(16), dp(16));

        column.addView(label(getString(R.string.model)));
        modelSpinner = new Spinner(this);
        column.addView(modelSpinner);
        modelInfo = new TextView(this);
        modelInfo.setTextSize(TypedValue.COMPLEX_UNIT_SP, 13);
        modelInfo.setTextColor(COLOR_BELOW);
        column.addView(modelInfo);

        column.addView(label(getString(R.string.samples)));
        HorizontalScrollView sampleScroll = new HorizontalScrollView(this);
        sampleScroll.setHorizontalScrollBarEnabled(false);
        LinearLayout sampleRow = new LinearLayout(this);
        sampleRow.setOrientation(LinearLayout.HORIZONTAL);
        for (final String sample : SAMPLES) {
            Button chip = new Button(this, null, android.R.attr.buttonStyleSmall);
            chip.setAllCaps(false);
            chip.setText(sample.length() > 16 ? sample.substring(0, 15) + "…" : sample);
            chip.setOnClickListener(new View.OnClickListener() {
                @Override
                public void onClick(View v) {
                    input.setText(sample);
                    input.setSelection(sample.length());
                    classify(sample);
                }
            });
            sampleRow.addView(chip);
        }
        sampleScroll.addView(sampleRow);
        column.addView(sampleScroll);

        input = new EditText(this);
        input.setText(SAMPLES[0]);
        input.setMinLines(3);
        input.setGravity(Gravity.TOP | Gravity.START);
        column.addView(input, new LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT,
                ViewGroup.LayoutParams.WRAP_CONTENT));

        classifyButton = new Button(this);
        classifyButton.setText(R.string.classify);
        column.addView(classifyButton, new LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT,
                ViewGroup.LayoutParams.WRAP_CONTENT));

        result = new TextView(this);
        result.setTextSize(TypedValue.COMPLEX_UNIT_SP, 16);
        result.setTextIsSelectable(true);
        result.setPadding(0, dp(12), 0, 0);
        column.addView(result);

        ScrollView scroll = new ScrollView(this);
        scroll.setFillViewport(true);
        scroll.addView(column);
        return scroll;
    }

    // ---------------------------------------------------------------- bundles

    /**
     * Bundles and cascades in the APK (assets/bundles/NAME/ with bundle.json or cascade.json) and pushed ones
     * (external files dir).
     */
    private void findBundles() {
        AssetManager assets = getAssets();
        try {
            String[] names = assets.list("bundles");
            for (String name : names == null ? new String[0] : names) {
                String[] files = assets.list("bundles/" + name);
                boolean hasDescription = false;
                for (String file : files == null ? new String[0] : files) {
                    hasDescription |= file.equals("bundle.json") || file.equals("cascade.json");
                }
                if (hasDescription) {
                    entries.add(new BundleEntry(name, true, new File(new File(getFilesDir(), "bundles"), name)));
                }
            }
        } catch (IOException err) {
            modelInfo.setText("Cannot list the APK's bundles: " + err.getMessage());
        }
        File external = getExternalFilesDir(null);
        File[] pushed = external == null ? null : new File(external, "bundles").listFiles();
        if (pushed != null) {
            for (File directory : pushed) {
                if (new File(directory, "bundle.json").isFile() || new File(directory, "cascade.json").isFile()) {
                    entries.add(new BundleEntry(directory.getName(), false, directory));
                }
            }
        }
    }

    /** Copy assets/bundles/NAME/ to getFilesDir()/bundles/NAME/ (ExecuTorch needs a file path), once per install. */
    private void copyFromApk(BundleEntry entry) throws IOException {
        String stamp;
        try {
            stamp = String.valueOf(getPackageManager().getPackageInfo(getPackageName(), 0).lastUpdateTime);
        } catch (PackageManager.NameNotFoundException err) {
            stamp = "unknown";
        }
        File stampFile = new File(entry.directory, ".copied-from-apk");
        if (stampFile.isFile() && stamp.equals(readSmallFile(stampFile))) {
            return;
        }
        File staging = new File(entry.directory.getParentFile(), entry.name + ".partial");
        deleteRecursively(staging);
        copyAssetTree("bundles/" + entry.name, staging);
        writeSmallFile(new File(staging, ".copied-from-apk"), stamp);
        deleteRecursively(entry.directory);
        if (!staging.renameTo(entry.directory)) {
            throw new IOException("cannot move " + staging + " to " + entry.directory);
        }
    }

    private void copyAssetTree(String assetPath, File target) throws IOException {
        String[] children = getAssets().list(assetPath);
        if (children == null || children.length == 0) {  // a file (asset directories are never empty)
            File parent = target.getParentFile();
            if (parent != null && !parent.isDirectory() && !parent.mkdirs()) {
                throw new IOException("cannot create " + parent);
            }
            InputStream in = getAssets().open(assetPath);
            try {
                OutputStream out = new FileOutputStream(target);
                try {
                    byte[] buffer = new byte[1 << 16];
                    for (int n; (n = in.read(buffer)) > 0; ) {
                        out.write(buffer, 0, n);
                    }
                } finally {
                    out.close();
                }
            } finally {
                in.close();
            }
            return;
        }
        for (String child : children) {
            copyAssetTree(assetPath + "/" + child, new File(target, child));
        }
    }

    private static String readSmallFile(File file) throws IOException {
        InputStream in = new java.io.FileInputStream(file);
        try {
            byte[] buffer = new byte[256];
            int n = in.read(buffer);
            return n <= 0 ? "" : new String(buffer, 0, n, "UTF-8");
        } finally {
            in.close();
        }
    }

    private static void writeSmallFile(File file, String text) throws IOException {
        OutputStream out = new FileOutputStream(file);
        try {
            out.write(text.getBytes("UTF-8"));
        } finally {
            out.close();
        }
    }

    private static void deleteRecursively(File file) {
        File[] children = file.listFiles();
        if (children != null) {
            for (File child : children) {
                deleteRecursively(child);
            }
        }
        //noinspection ResultOfMethodCallIgnored
        file.delete();
    }

    // ---------------------------------------------------------------- loading and classifying

    private void select(final BundleEntry entry) {
        classifyButton.setEnabled(false);
        modelInfo.setTextColor(COLOR_BELOW);
        modelInfo.setText("Loading " + entry + "…");
        result.setText("");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                final CharSequence info = load(entry);
                final boolean loaded = bundle != null;
                ui.post(new Runnable() {
                    @Override
                    public void run() {
                        modelInfo.setText(info);
                        classifyButton.setEnabled(loaded);
                        if (loaded) {
                            classify(input.getText().toString());
                        }
                    }
                });
            }
        });
    }

    /**
     * On the worker: copy if needed, read the bundle (or the cascade and its two bundles), load its programs and
     * warm them up; a line about it.
     */
    private CharSequence load(BundleEntry entry) {
        closeClassifier();
        bundle = null;
        cascade = null;
        runtimeError = null;
        long start = System.nanoTime();
        try {
            if (entry.inApk) {
                copyFromApk(entry);
            }
            if (new File(entry.directory, "cascade.json").isFile()) {
                cascade = Cascade.load(entry.directory);
                bundle = cascade.fast();
            } else {
                bundle = DeviceBundle.load(entry.directory);
            }
        } catch (IOException err) {
            return colored("Cannot read bundle " + entry + ": " + err.getMessage(), COLOR_ERROR);
        } catch (RuntimeException err) {
            return colored("Cannot read bundle " + entry + ": " + err, COLOR_ERROR);
        }
        String where = entry.inApk ? "shipped in the APK" : entry.directory.getPath();
        String description = cascade == null
                ? String.format(Locale.US, "%s — %s, %s, %d labels, %s", entry.name, bundle.architecture(),
                        bundle.precision(), bundle.labels().size(), where)
                : String.format(Locale.US, "%s — cascade of a fast %s (%s) and an accurate %s (%s), escalates below "
                        + "confidence %.4f, %d labels, %s", entry.name, bundle.architecture(), bundle.precision(),
                        cascade.accurate().architecture(), cascade.accurate().precision(), cascade.threshold(),
                        bundle.labels().size(), where);
        DeviceBundle loading = bundle;
        try {
            classifier = PteClassifier.load(bundle);
            classifier.classify(SAMPLES[0]);  // the first run allocates and initialises kernels: not timed later
            if (cascade != null) {
                loading = cascade.accurate();
                accurate = PteClassifier.load(loading);
                accurate.classify(SAMPLES[0]);
            }
        } catch (Throwable err) {  // UnsatisfiedLinkError / NoClassDefFoundError without the ExecuTorch AAR
            closeClassifier();
            String program = cascade == null ? loading.modelFile().getName()
                    : loading.directory().getName() + "/" + loading.modelFile().getName();
            runtimeError = "ExecuTorch cannot run " + program + ": " + err
                    + "\n(This build has no ExecuTorch runtime or cannot load this program. Build the app with "
                    + "Gradle, which adds org.pytorch:executorch-android; the tokenizer still runs.)";
            SpannableStringBuilder text = new SpannableStringBuilder(description + "\n");
            text.append(colored(runtimeError, COLOR_ERROR));
            return text;
        }
        return String.format(Locale.US, "%s\nloaded and warmed up in %.0f ms", description,
                (System.nanoTime() - start) / 1e6);
    }

    private void closeClassifier() {
        if (classifier != null) {
            classifier.close();
            classifier = null;
        }
        if (accurate != null) {
            accurate.close();
            accurate = null;
        }
    }

    private void classify(final String text) {
        if (!classifyButton.isEnabled()) {  // no bundle, or one still loading
            return;
        }
        worker.execute(new Runnable() {
            @Override
            public void run() {
                final CharSequence shown = classifyOnWorker(text);
                ui.post(new Runnable() {
                    @Override
                    public void run() {
                        result.setText(shown);
                    }
                });
            }
        });
    }

    private CharSequence classifyOnWorker(String text) {
        if (bundle == null) {
            return "";
        }
        if (classifier == null) {  // no runtime: show what the on-phone tokenizer made of the text
            long start = System.nanoTime();
            long[][] encoded = bundle.encode(text);
            double ms = (System.nanoTime() - start) / 1e6;
            int tokens = 0;
            for (long m : encoded[1]) {
                tokens += m != 0 ? 1 : 0;
            }
            SpannableStringBuilder out = new SpannableStringBuilder();
            out.append(String.format(Locale.US, "Tokenized in %.2f ms: %d tokens, input length %d\n", ms, tokens,
                    encoded[0].length));
            out.append(colored(runtimeError, COLOR_ERROR));
            return out;
        }
        try {
            PteClassifier.Result fast = classifier.classify(text);
            boolean escalated = cascade != null && cascade.escalates(fast.logits);
            return render(escalated ? accurate.classify(text) : fast, fast);
        } catch (Throwable err) {
            return colored("Inference failed: " + err, COLOR_ERROR);
        }
    }

    /**
     * The labels of {@code outcome} and the time; for a cascade also which model answered. {@code fast} is the
     * first model's run: the outcome itself unless the cascade escalated the text.
     */
    private CharSequence render(PteClassifier.Result outcome, PteClassifier.Result fast) {
        SpannableStringBuilder out = new SpannableStringBuilder();
        if (cascade != null) {
            appendAnswerer(out, outcome != fast, fast);
        }
        int depth = classifier.bundle().exitMethods().size();
        if (outcome.exitLayer > 0) {
            appendHeading(out, "Answered by");
            out.append(outcome.exitLayer < depth
                    ? String.format(Locale.US, "the exit after layer %d of %d (confident enough there)",
                            outcome.exitLayer, depth)
                    : String.format(Locale.US, "the last layer (%d): no earlier exit was confident enough", depth));
        }
        List<LabelScore> predicted = outcome.classification.predicted();
        appendHeading(out, predicted.size() == 1 ? "Predicted label" : "Predicted labels");
        boolean byThreshold = outcome.classification.byThreshold();
        for (LabelScore score : predicted) {
            String note = !byThreshold ? "most probable" : score.probability >= score.threshold
                    ? String.format(Locale.US, "≥ %.0f%%", 100 * score.threshold)
                    : "top label; none reached its threshold";
            appendScore(out, "● ", score, note, COLOR_PREDICTED, true);
        }
        List<LabelScore> below = new ArrayList<LabelScore>();
        for (LabelScore score : outcome.classification.ranked()) {
            if (!score.predicted && below.size() < BELOW_THRESHOLD_SHOWN) {
                below.add(score);
            }
        }
        if (!below.isEmpty()) {
            appendHeading(out, byThreshold ? "Next below threshold" : "Next most probable");
            for (LabelScore score : below) {
                appendScore(out, "○ ", score, byThreshold ? String.format(Locale.US, "< %.0f%%",
                        100 * score.threshold) : "", COLOR_BELOW, false);
            }
        }
        appendHeading(out, "Inference time");
        if (cascade == null) {
            out.append(String.format(Locale.US, "%s\n%d tokens, input [1, %d]", time(outcome), outcome.tokens,
                    outcome.inputLength));
        } else {
            out.append(String.format(Locale.US, "fast %s: %s", cascade.fast().architecture(), time(fast)));
            if (outcome != fast) {
                out.append(String.format(Locale.US, "\naccurate %s: %s", cascade.accurate().architecture(),
                        time(outcome)));
            }
        }
        return out;
    }

    /** "2.3 ms  (tokenize 0.20 ms + forward 2.1 ms)": one model's run. */
    private static String time(PteClassifier.Result run) {
        return String.format(Locale.US, "%.1f ms  (tokenize %.2f ms + forward %.1f ms)", run.tokenizeMs + run.forwardMs,
                run.tokenizeMs, run.forwardMs);
    }

    /** Which of the cascade's models answered, from the fast model's confidence against the threshold. */
    private void appendAnswerer(SpannableStringBuilder out, boolean escalated, PteClassifier.Result fast) {
        DeviceBundle fastBundle = cascade.fast();
        double confidence = fastBundle.confidence(fastBundle.probabilities(fast.logits));
        appendHeading(out, "Answered by");
        out.append(escalated
                ? String.format(Locale.US, "the accurate model (%s): the fast model's confidence %.4f < threshold %.4f",
                        cascade.accurate().architecture(), confidence, cascade.threshold())
                : String.format(Locale.US, "the fast model (%s): confidence %.4f ≥ threshold %.4f",
                        fastBundle.architecture(), confidence, cascade.threshold()));
    }

    private static void appendHeading(SpannableStringBuilder out, String heading) {
        if (out.length() > 0) {
            out.append("\n\n");
        }
        int start = out.length();
        out.append(heading).append('\n');
        out.setSpan(new StyleSpan(Typeface.BOLD), start, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
        out.setSpan(new RelativeSizeSpan(0.85f), start, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
    }

    private static void appendScore(SpannableStringBuilder out, String bullet, LabelScore score, String note,
                                    int color, boolean bold) {
        int start = out.length();
        out.append(bullet).append(score.label);
        out.append(String.format(Locale.US, "  %.1f%%", 100 * score.probability));
        out.setSpan(new ForegroundColorSpan(color), start, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
        if (bold) {
            out.setSpan(new StyleSpan(Typeface.BOLD), start, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
        }
        int noteStart = out.length();
        out.append("   ").append(note).append('\n');
        out.setSpan(new ForegroundColorSpan(COLOR_BELOW), noteStart, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
        out.setSpan(new RelativeSizeSpan(0.8f), noteStart, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
    }

    private static CharSequence colored(String text, int color) {
        SpannableStringBuilder out = new SpannableStringBuilder(text);
        out.setSpan(new ForegroundColorSpan(color), 0, out.length(), Spanned.SPAN_EXCLUSIVE_EXCLUSIVE);
        return out;
    }
}
