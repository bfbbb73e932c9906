package org.mobclf.core;

/** One label's probability, its decision threshold, and whether the label was predicted. */
public final class LabelScore {
    public final String label;
    public final float probability;
    public final float threshold;
    public final boolean predicted;

    LabelScore(String label, float probability, float threshold, boolean predicted) {
        this.label = label;
        this.probability = probability;
        this.threshold = threshold;
        this.predicted = predicted;
    }

    @Override
    public String toString() {
        return String.format(java.util.Locale.ROOT, "%s %.3f%s", label, probability, predicted ? " *" : "");
    }
}
