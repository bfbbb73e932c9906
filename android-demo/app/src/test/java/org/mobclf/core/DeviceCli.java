package org.mobclf.core;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The phone's tokenizer and post-processing on the JVM, so tests can compare them with Python line by line.
 *
 * <pre>
 * tokenize TOKENIZER_DIR TEXTS.jsonl   one line of space-separated ids per {"text": ...} line
 * encode   BUNDLE_DIR    TEXTS.jsonl   one {"input_ids": [...], "attention_mask": [...]} line per text
 * classify BUNDLE_DIR    LOGITS.jsonl  one JSON array of predicted labels per {"logits": [...]} line
 * escalate CASCADE_DIR   LOGITS.jsonl  per line of the fast model's {"logits": [...]}, whether the cascade sends
 *                                      the text to its accurate model ({"escalate": true|false, "confidence": c})
 * exit     BUNDLE_DIR    EXITS.jsonl   per line of an early-exit model's {"exits": [[logits of exit 1], ...]}, the
 *                                      layer the text leaves at ({"exit_layer": k}, 1-based)
 * time     TOKENIZER_DIR TEXTS.jsonl   {"ms": [...]}: each text's encode time, warm (after 3 s and 20 rounds),
 *                                      the median of 9 encodes
 * </pre>
 */
public final class DeviceCli {
    private static final int REPEATS = 9;
    private static final long WARM_UP_NANOS = 3_000_000_000L;  // and 20 rounds: HotSpot's C2 has compiled it all

    private DeviceCli() {
    }

    public static void main(String[] args) throws IOException, JSONException {
        if (args.length != 3) {
            System.err.println("usage: DeviceCli tokenize|encode|classify|escalate|exit|time DIR INPUT.jsonl");
            System.exit(2);
        }
        if (args[0].equals("time")) {
            System.out.println(timeEncoding(Tokenizer.load(new File(args[1])), args[2]));
            return;
        }
        Writer out = new BufferedWriter(new OutputStreamWriter(System.out, Tokenizer.UTF8));
        BufferedReader lines = new BufferedReader(new InputStreamReader(new FileInputStream(args[2]), Tokenizer.UTF8));
        File directory = new File(args[1]);
        String command = args[0];
        Tokenizer tokenizer = command.equals("tokenize") ? Tokenizer.load(directory) : null;
        Cascade cascade = command.equals("escalate") ? Cascade.load(directory) : null;
        DeviceBundle bundle = command.equals("tokenize") ? null : cascade != null ? cascade.fast()
                : DeviceBundle.load(directory);
        for (String line; (line = lines.readLine()) != null; ) {
            JSONObject item = new JSONObject(line);
            if (command.equals("tokenize")) {
                int[] ids = tokenizer.encode(item.getString("text"));
                StringBuilder text = new StringBuilder();
                for (int i = 0; i < ids.length; i++) {
                    text.append(i == 0 ? "" : " ").append(ids[i]);
                }
                out.write(text.append('\n').toString());
            } else if (command.equals("encode")) {
                long[][] inputs = bundle.encode(item.getString("text"));
                JSONObject encoded = new JSONObject();
                encoded.put("input_ids", toJson(inputs[0]));
                encoded.put("attention_mask", toJson(inputs[1]));
                out.write(encoded.toString() + "\n");
            } else if (command.equals("escalate")) {
                float[] logits = toFloats(item.getJSONArray("logits"));
                JSONObject decision = new JSONObject();
                decision.put("escalate", cascade.escalates(logits));
                decision.put("confidence", bundle.confidence(bundle.probabilities(logits)));
                out.write(decision.toString() + "\n");
            } else if (command.equals("exit")) {
                JSONArray exits = item.getJSONArray("exits");
                int layer = 1;
                while (layer < exits.length() && !bundle.leavesAt(toFloats(exits.getJSONArray(layer - 1)))) {
                    layer++;
                }
                out.write(new JSONObject().put("exit_layer", layer).toString() + "\n");
            } else {
                float[] logits = toFloats(item.getJSONArray("logits"));
                JSONArray predicted = new JSONArray();
                for (LabelScore score : bundle.classify(logits).predicted()) {
                    predicted.put(score.label);
                }
                out.write(predicted.toString() + "\n");
            }
        }
        out.flush();
    }

    /**
     * Each text's encode time in ms once the JIT has compiled the tokenizer (what a running app pays): the median of
     * {@code REPEATS} timed encodes, so that a garbage collection or a compilation landing on one text is not
     * counted as its cost.
     */
    private static String timeEncoding(Tokenizer tokenizer, String textsFile) throws IOException, JSONException {
        List<String> texts = new ArrayList<>();
        BufferedReader lines =
                new BufferedReader(new InputStreamReader(new FileInputStream(textsFile), Tokenizer.UTF8));
        for (String line; (line = lines.readLine()) != null; ) {
            texts.add(new JSONObject(line).getString("text"));
        }
        long checksum = 0;
        long warmUntil = System.nanoTime() + WARM_UP_NANOS;
        for (int round = 0; round < 20 || System.nanoTime() < warmUntil; round++) {
            for (String text : texts) {
                checksum += tokenizer.encode(text).length;
            }
        }
        JSONArray ms = new JSONArray();
        long[] nanos = new long[REPEATS];
        for (String text : texts) {
            for (int repeat = 0; repeat < REPEATS; repeat++) {
                long start = System.nanoTime();
                checksum += tokenizer.encode(text).length;
                nanos[repeat] = System.nanoTime() - start;
            }
            Arrays.sort(nanos);
            ms.put(nanos[REPEATS / 2] / 1e6);
        }
        return new JSONObject().put("ms", ms).put("tokens", checksum).toString();  // tokens: keeps the work used
    }

    private static float[] toFloats(JSONArray values) throws JSONException {
        float[] floats = new float[values.length()];
        for (int i = 0; i < floats.length; i++) {
            floats[i] = (float) values.getDouble(i);
        }
        return floats;
    }

    private static JSONArray toJson(long[] values) {
        JSONArray array = new JSONArray();
        for (long value : values) {
            array.put(value);
        }
        return array;
    }
}
