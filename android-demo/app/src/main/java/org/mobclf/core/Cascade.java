package org.mobclf.core;

import java.io.File;
import java.io.IOException;

import org.json.JSONException;
import org.json.JSONObject;

/**
 * A cascade written by {@code mobclf cascade}: {@code cascade.json} and two bundles, {@code fast/} and
 * {@code accurate/}. The fast model answers every text; the accurate model answers those whose fast confidence
 * ({@link DeviceBundle#confidence}) is below the threshold calibrated for ExecuTorch, the rule
 * {@code toolkit/mobclf/cascade.py} writes down.
 */
public final class Cascade {
    private static final String RUNTIME = "executorch";

    private final DeviceBundle fast;
    private final DeviceBundle accurate;
    private final double threshold;

    private Cascade(DeviceBundle fast, DeviceBundle accurate, double threshold) {
        this.fast = fast;
        this.accurate = accurate;
        this.threshold = threshold;
    }

    /** Read the cascade in {@code directory}; a missing or malformed file is an IOException naming it. */
    public static Cascade load(File directory) throws IOException {
        File ruleFile = new File(directory, "cascade.json");
        if (!ruleFile.isFile()) {
            throw new IOException(directory + ": no cascade.json; make one with `mobclf cascade`");
        }
        try {
            JSONObject runtimes = Tokenizer.readJson(ruleFile).getJSONObject("runtimes");
            if (!runtimes.has(RUNTIME)) {
                throw new IOException(ruleFile + ": no " + RUNTIME + " models; cascade two bundles exported with "
                        + "--target android");
            }
            JSONObject rule = runtimes.getJSONObject(RUNTIME);
            return new Cascade(DeviceBundle.load(new File(directory, folderOf(rule.getString("fast")))),
                    DeviceBundle.load(new File(directory, folderOf(rule.getString("accurate")))),
                    rule.getDouble("threshold"));
        } catch (JSONException err) {
            throw new IOException(ruleFile + ": " + err.getMessage() + "; make the cascade again");
        }
    }

    private static String folderOf(String file) {
        return file.substring(0, file.indexOf('/'));
    }

    public DeviceBundle fast() {
        return fast;
    }

    public DeviceBundle accurate() {
        return accurate;
    }

    public double threshold() {
        return threshold;
    }

    /** Whether the accurate model answers a text the fast model gave {@code fastLogits}. */
    public boolean escalates(float[] fastLogits) {
        return fast.confidence(fast.probabilities(fastLogits)) < threshold;
    }
}
