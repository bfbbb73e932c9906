package org.mobclf.core;

/** Logits to probabilities, in double precision so that thresholds decide as they do in Python. */
final class Activations {
    private Activations() {
    }

    static float[] sigmoid(float[] logits) {
        float[] probabilities = new float[logits.length];
        for (int i = 0; i < logits.length; i++) {
            probabilities[i] = (float) (1.0 / (1.0 + Math.exp(-logits[i])));
        }
        return probabilities;
    }

    static float[] softmax(float[] logits) {
        double largest = Double.NEGATIVE_INFINITY;
        for (float logit : logits) {
            largest = Math.max(largest, logit);
        }
        double sum = 0;
        double[] exponentials = new double[logits.length];
        for (int i = 0; i < logits.length; i++) {
            exponentials[i] = Math.exp(logits[i] - largest);
            sum += exponentials[i];
        }
        float[] probabilities = new float[logits.length];
        for (int i = 0; i < logits.length; i++) {
            probabilities[i] = (float) (exponentials[i] / sum);
        }
        return probabilities;
    }
}
