package org.mobclf.demo;

import java.io.File;
import java.util.List;

import org.mobclf.core.Classification;
import org.mobclf.core.DeviceBundle;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * A bundle's {@code model.pte} in the ExecuTorch runtime, with the bundle's tokenizer in front and its
 * post-processing (sigmoid/softmax, thresholds) behind. The program takes {@code input_ids} and
 * {@code attention_mask}, int64 {@code [1, L]} with L = max(number of ids, the bundle's min_length), and returns
 * logits {@code [1, labels]}. An early-exit bundle's program has a method per layer instead ({@code exit_1} takes
 * the ids and mask and returns the layer's states and its exit's logits, {@code exit_k} takes the states before it
 * and the mask): they run in turn until an exit is sure enough ({@link DeviceBundle#leavesAt}), so a text that leaves
 * runs no further layers. Not thread-safe: use one instance from one thread at a time.
 */
public final class PteClassifier {

    /** The outcome of one text: the model's logits, the labels and where the time went. */
    public static final class Result {
        public final float[] logits;
        public final Classification classification;
        /** Real tokens (attention mask 1) and the model input's length L (with padding). */
        public final int tokens;
        public final int inputLength;
        public final double tokenizeMs;
        public final double forwardMs;
        /** The layer an early-exit model answered from (1-based); 0 for a plain classifier. */
        public final int exitLayer;

        Result(float[] logits, Classification classification, int tokens, int inputLength, double tokenizeMs,
               double forwardMs, int exitLayer) {
            this.logits = logits;
            this.classification = classification;
            this.tokens = tokens;
            this.inputLength = inputLength;
            this.tokenizeMs = tokenizeMs;
            this.forwardMs = forwardMs;
            this.exitLayer = exitLayer;
        }
    }

    /** The logits the program answered with and the layer it answered from (0: a plain classifier). */
    private static final class Answer {
        final float[] logits;
        final int exitLayer;

        Answer(float[] logits, int exitLayer) {
            this.logits = logits;
            this.exitLayer = exitLayer;
        }
    }

    private final DeviceBundle bundle;
    private Module module;

    private PteClassifier(DeviceBundle bundle, Module module) {
        this.bundle = bundle;
        this.module = module;
    }

    /**
     * Load the bundle's program. ExecuTorch reads it from a file path, so the bundle must be a real directory
     * (not an APK asset). Throws an unchecked error when the native runtime is missing (a build without the
     * ExecuTorch AAR) or the file is not a program this runtime can load.
     */
    public static PteClassifier load(DeviceBundle bundle) {
        File model = bundle.modelFile();
        if (!model.isFile()) {
            throw new IllegalStateException(model + " is missing");
        }
        Module module = Module.load(model.getAbsolutePath());
        return new PteClassifier(bundle, module);
    }

    public DeviceBundle bundle() {
        return bundle;
    }

    /** Logits of one encoded text; {@code inputIds} and {@code attentionMask} have the same length L. */
    public float[] forward(long[] inputIds, long[] attentionMask) {
        return answer(inputIds, attentionMask).logits;
    }

    private Answer answer(long[] inputIds, long[] attentionMask) {
        if (module == null) {
            throw new IllegalStateException("classifier closed");
        }
        if (inputIds.length != attentionMask.length || inputIds.length == 0) {
            throw new IllegalArgumentException("input_ids and attention_mask must have the same non-zero length");
        }
        long[] shape = new long[] {1, inputIds.length};
        EValue ids = EValue.from(Tensor.fromBlob(inputIds, shape));
        EValue mask = EValue.from(Tensor.fromBlob(attentionMask, shape));
        List<String> methods = bundle.exitMethods();
        if (methods.isEmpty()) {
            return new Answer(logitsOf(module.forward(ids, mask), 0, "forward"), 0);
        }
        EValue inputs = ids;
        for (int layer = 1; ; layer++) {
            String method = methods.get(layer - 1);
            EValue[] outputs = module.execute(method, inputs, mask);
            boolean last = layer == methods.size();
            float[] logits = logitsOf(outputs, last ? 0 : 1, method);
            if (last || bundle.leavesAt(logits)) {
                return new Answer(logits, layer);
            }
            inputs = outputs[0];  // the layer's states, for the next method
        }
    }

    private float[] logitsOf(EValue[] outputs, int index, String method) {
        if (outputs == null || outputs.length <= index) {
            throw new IllegalStateException(bundle.modelFile() + ": " + method + " returned no logits");
        }
        float[] logits = outputs[index].toTensor().getDataAsFloatArray();
        if (logits.length != bundle.labels().size()) {
            throw new IllegalStateException(bundle.modelFile() + ": " + logits.length + " logits for "
                    + bundle.labels().size() + " labels; the model and bundle.json do not match");
        }
        return logits;
    }

    /** Tokenize, run and post-process {@code text}, timing the tokenizer and the forward pass separately. */
    public Result classify(String text) {
        long start = System.nanoTime();
        long[][] encoded = bundle.encode(text);
        long tokenized = System.nanoTime();
        Answer answer = answer(encoded[0], encoded[1]);
        long done = System.nanoTime();
        int tokens = 0;
        for (long m : encoded[1]) {
            tokens += m != 0 ? 1 : 0;
        }
        return new Result(answer.logits, bundle.classify(answer.logits), tokens, encoded[0].length,
                (tokenized - start) / 1e6, (done - tokenized) / 1e6, answer.exitLayer);
    }

    /** Free the native program. */
    public void close() {
        if (module != null) {
            module.destroy();
            module = null;
        }
    }
}
