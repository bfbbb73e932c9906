package org.mobclf.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * A bundle written by {@code mobclf export --target android}: {@code bundle.json} (inputs, output activation,
 * labels, thresholds), {@code labels.txt}, {@code tokenizer/} and {@code model.pte}. Turns a text into the model's
 * inputs and the model's logits into labels, with the rules {@code toolkit/mobclf/export/bundle.py} writes down.
 */
public final class DeviceBundle {
    private static final int SCHEMA_VERSION = 1;

    private final File directory;
    private final JSONObject description;
    private final Tokenizer tokenizer;
    private final List<String> labels;
    private final double[] thresholds;
    private final boolean sigmoid;
    private final boolean argmax;
    private final int minLength;
    private final int padId;
    private final List<String> exitMethods;
    private final double exitThreshold;

    private DeviceBundle(File directory) throws IOException {
        this.directory = directory;
        File descriptionFile = new File(directory, "bundle.json");
        if (!descriptionFile.isFile()) {
            throw new IOException(directory + ": no bundle.json; export one with `mobclf export --target android`");
        }
        description = Tokenizer.readJson(descriptionFile);
        try {
            int version = description.getInt("schema_version");
            if (version != SCHEMA_VERSION) {
                throw new IOException(descriptionFile + ": bundle schema " + version + ", this app reads "
                        + SCHEMA_VERSION + "; re-export with the matching mobclf");
            }
            JSONObject inputs = description.getJSONObject("inputs");
            minLength = inputs.getInt("min_length");
            padId = inputs.getInt("pad_id");
            JSONObject output = description.getJSONObject("output");
            String activation = output.getString("activation");
            if (!activation.equals("sigmoid") && !activation.equals("softmax")) {
                throw new IOException(descriptionFile + ": unknown output activation '" + activation + "'");
            }
            sigmoid = activation.equals("sigmoid");
            argmax = output.getString("decision").equals("argmax");
            labels = readLabels(description.getJSONArray("labels"));
            JSONArray thresholdValues = description.getJSONArray("thresholds");
            thresholds = new double[thresholdValues.length()];
            for (int i = 0; i < thresholds.length; i++) {
                thresholds[i] = thresholdValues.getDouble(i);
            }
            if (thresholds.length != labels.size()) {
                throw new IOException(descriptionFile + ": " + labels.size() + " labels but " + thresholds.length
                        + " thresholds; re-export the bundle");
            }
            tokenizer = Tokenizer.load(new File(directory, description.getJSONObject("tokenizer")
                    .getString("directory")));
            JSONObject earlyExit = description.optJSONObject("early_exit");
            exitMethods = earlyExit == null ? Collections.<String>emptyList()
                    : readLabels(earlyExit.getJSONArray("methods"));
            exitThreshold = earlyExit == null ? Double.NaN : earlyExit.getDouble("threshold");
        } catch (JSONException err) {
            throw new IOException(descriptionFile + ": " + err.getMessage() + "; re-export the bundle");
        }
    }

    /** Read the bundle in {@code directory}; a missing or malformed file is an IOException naming it. */
    public static DeviceBundle load(File directory) throws IOException {
        return new DeviceBundle(directory);
    }

    private static List<String> readLabels(JSONArray values) throws JSONException {
        List<String> labels = new ArrayList<String>(values.length());
        for (int i = 0; i < values.length(); i++) {
            labels.add(values.getString(i));
        }
        return Collections.unmodifiableList(labels);
    }

    /**
     * An early-exit bundle's program methods, one per layer ({@code exit_1 .. exit_D}, bundle.json's
     * {@code early_exit}); empty for a plain classifier, whose program has {@code forward} only.
     */
    public List<String> exitMethods() {
        return exitMethods;
    }

    /**
     * Whether a text leaves an early-exit model at an exit that gave {@code logits}: its confidence
     * ({@link #confidence}) reaches the calibrated threshold, the rule of {@code toolkit/mobclf/models/early_exit.py}.
     */
    public boolean leavesAt(float[] logits) {
        return confidence(probabilities(logits)) >= exitThreshold;
    }

    public File directory() {
        return directory;
    }

    /** The ExecuTorch program, {@code model.pte}. */
    public File modelFile() {
        return new File(directory, executorchFile().optString("file", "model.pte"));
    }

    private JSONObject executorchFile() {
        JSONObject model = description.optJSONObject("model");
        JSONObject files = model == null ? null : model.optJSONObject("files");
        JSONObject executorch = files == null ? null : files.optJSONObject("executorch");
        return executorch == null ? new JSONObject() : executorch;
    }

    /** The student's architecture, e.g. {@code textcnn} or {@code bert}. */
    public String architecture() {
        return description.optJSONObject("model").optString("architecture", "?");
    }

    /** {@code int8} or {@code fp32}: the precision of {@code model.pte}. */
    public String precision() {
        return executorchFile().optString("precision", "?");
    }

    public List<String> labels() {
        return labels;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /**
     * {@code {input_ids, attention_mask}} of {@code text} for a {@code [1, L]} model input: the tokenizer's ids
     * (truncated to its max length), padded with the pad id and mask 0 up to the bundle's min length.
     */
    public long[][] encode(String text) {
        int[] ids = tokenizer.encode(text);
        int length = Math.max(ids.length, minLength);
        long[] inputIds = new long[length];
        long[] attentionMask = new long[length];
        for (int i = 0; i < length; i++) {
            inputIds[i] = i < ids.length ? ids[i] : padId;
            attentionMask[i] = i < ids.length ? 1 : 0;
        }
        return new long[][] {inputIds, attentionMask};
    }

    /** The probabilities of the model's logits, with the bundle's activation (sigmoid or softmax). */
    public float[] probabilities(float[] logits) {
        if (logits.length != labels.size()) {
            throw new IllegalArgumentException(logits.length + " logits for " + labels.size() + " labels");
        }
        return sigmoid ? Activations.sigmoid(logits) : Activations.softmax(logits);
    }

    /**
     * How far the model's probabilities are from changing its decision, as {@code mobclf.cascade.confidence}: for
     * "argmax" (single-label) the margin between the two most probable labels, else the least distance of a label
     * from its threshold. Computed in double from the float probabilities, as Python does.
     */
    public double confidence(float[] probabilities) {
        if (argmax) {
            if (probabilities.length < 2) {
                return 1.0;
            }
            double first = Double.NEGATIVE_INFINITY;
            double second = Double.NEGATIVE_INFINITY;
            for (float probability : probabilities) {
                if (probability > first) {
                    second = first;
                    first = probability;
                } else if (probability > second) {
                    second = probability;
                }
            }
            return first - second;
        }
        double nearest = Double.POSITIVE_INFINITY;
        for (int i = 0; i < probabilities.length; i++) {
            nearest = Math.min(nearest, Math.abs((double) probabilities[i] - thresholds[i]));
        }
        return nearest;
    }

    /**
     * Labels from the model's logits, with the bundle's activation (sigmoid or softmax) and decision, as
     * {@code mobclf.train.thresholds.predict_labels}: "argmax" (single-label) takes the most probable label; else
     * (multi-label) every label at or above its threshold, or the most probable one when none passes.
     */
    public Classification classify(float[] logits) {
        float[] probabilities = probabilities(logits);
        int best = 0;
        for (int i = 1; i < probabilities.length; i++) {
            if (probabilities[i] > probabilities[best]) {
                best = i;
            }
        }
        boolean anyPasses = false;
        for (int i = 0; i < probabilities.length && !argmax; i++) {
            anyPasses |= probabilities[i] >= thresholds[i];
        }
        List<LabelScore> scores = new ArrayList<LabelScore>(labels.size());
        for (int i = 0; i < labels.size(); i++) {
            boolean predicted = anyPasses ? probabilities[i] >= thresholds[i] : i == best;
            scores.add(new LabelScore(labels.get(i), probabilities[i], (float) thresholds[i], predicted));
        }
        return new Classification(scores, !argmax);
    }
}
