package org.mobclf.core;

import java.io.File;
import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.json.JSONObject;

/**
 * Jieba word tokenizer ({@code toolkit/mobclf/text/jieba_words.py}): jieba 0.42.1's {@code cut(text, HMM=False)}
 * over the bundle's {@code jieba_dict.txt}, on text whose full-width ASCII became ASCII.
 *
 * <p>Each maximal run of {@code [\u4E00-\u9FD5a-zA-Z0-9+#&._%-]} is cut along the most probable path through the
 * dictionary's words (log frequencies, computed from the end of the run backwards, ties to the longer word);
 * consecutive single-character {@code [a-zA-Z0-9]} words on that path are joined. Every other code point is a word
 * of its own. Whitespace and zero-width words are dropped; with {@code lowercase}, A-Z become a-z.
 */
final class JiebaTokenizer extends Tokenizer {
    /** Word and prefix to frequency; a prefix that is not itself a word has frequency 0 (jieba's gen_pfdict). */
    private final Map<String, Integer> frequencies = new HashMap<String, Integer>(1 << 20);
    private final double logTotal;

    JiebaTokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        super(vocab, spec, directory);
        File dictionary = new File(directory, spec.optString("dictionary_file", "jieba_dict.txt"));
        if (spec.optBoolean("hmm", false)) {
            throw new IOException(new File(directory, SPEC_FILE) + ": jieba's HMM is on, and its model is not in "
                    + "the bundle; rebuild the tokenizer without --hmm to run it on a phone");
        }
        String[] lines = new String(readBytes(dictionary), UTF8).split("\n");
        long total = 0;
        for (int number = 0; number < lines.length; number++) {
            String line = lines[number].trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] fields = line.split(" ");
            int frequency;
            try {
                frequency = Integer.parseInt(fields[1]);
            } catch (RuntimeException err) {
                throw new IOException(dictionary + ":" + (number + 1) + ": expected `word frequency`; "
                        + "re-export the bundle");
            }
            String word = fields[0];
            frequencies.put(word, frequency);
            total += frequency;
            for (int end = 1; end < word.length(); end++) {
                String prefix = word.substring(0, end);
                if (!frequencies.containsKey(prefix)) {
                    frequencies.put(prefix, 0);
                }
            }
        }
        logTotal = Math.log(total);
    }

    private static boolean inBlock(int codePoint) {
        return (codePoint >= 0x4E00 && codePoint <= 0x9FD5) || Chars.isAsciiAlphanumeric(codePoint)
                || "+#&._%-".indexOf(codePoint) >= 0;
    }

    @Override
    protected void tokenize(String text, int limit, List<String> out) {
        StringBuilder normalized = new StringBuilder(text.length());
        for (int index = 0; index < text.length(); ) {
            int codePoint = text.codePointAt(index);
            normalized.appendCodePoint(Chars.normalize(codePoint, false));
            index += Character.charCount(codePoint);
        }
        String sentence = normalized.toString();
        for (int index = 0; index < sentence.length() && out.size() < limit; ) {
            int codePoint = sentence.codePointAt(index);
            if (inBlock(codePoint)) {
                int end = index;
                while (end < sentence.length() && inBlock(sentence.charAt(end))) {
                    end++;  // block characters are all in the BMP: one char each
                }
                cutBlock(sentence.substring(index, end), limit, out);
                index = end;
            } else {
                if (!Chars.isSkipped(codePoint)) {
                    add(new String(Character.toChars(codePoint)), limit, out);
                }
                index += Character.charCount(codePoint);
            }
        }
    }

    /** jieba's {@code __cut_DAG_NO_HMM} on one block (every char of which is one code point). */
    private void cutBlock(String block, int limit, List<String> out) {
        int length = block.length();
        double[] best = new double[length + 1];
        int[] bestEnd = new int[length];
        for (int start = length - 1; start >= 0; start--) {
            best[start] = Double.NEGATIVE_INFINITY;
            boolean found = false;
            for (int end = start + 1; end <= length; end++) {
                Integer frequency = frequencies.get(block.substring(start, end));
                if (frequency == null) {
                    break;
                }
                if (frequency > 0) {
                    found = true;
                    consider(start, end, frequency, best, bestEnd);
                }
            }
            if (!found) {
                Integer frequency = frequencies.get(block.substring(start, start + 1));
                consider(start, start + 1, frequency == null ? 0 : frequency, best, bestEnd);
            }
        }
        StringBuilder letters = new StringBuilder();
        for (int start = 0; start < length && out.size() < limit; start = bestEnd[start]) {
            String word = block.substring(start, bestEnd[start]);
            if (word.length() == 1 && Chars.isAsciiAlphanumeric(word.charAt(0))) {
                letters.append(word);
                continue;
            }
            if (letters.length() > 0) {
                add(letters.toString(), limit, out);
                letters.setLength(0);
            }
            add(word, limit, out);
        }
        if (letters.length() > 0) {
            add(letters.toString(), limit, out);
        }
    }

    /** {@code log(freq or 1) - log(total) + best[end]}, kept if at least as good (ties go to the longer word). */
    private void consider(int start, int end, int frequency, double[] best, int[] bestEnd) {
        double score = Math.log(frequency == 0 ? 1 : frequency) - logTotal + best[end];
        if (score >= best[start]) {
            best[start] = score;
            bestEnd[start] = end;
        }
    }

    private void add(String word, int limit, List<String> out) {
        if (out.size() < limit) {
            out.add(lowercase ? asciiLower(word) : word);
        }
    }

    private static String asciiLower(String word) {
        StringBuilder lower = new StringBuilder(word.length());
        for (int i = 0; i < word.length(); i++) {
            lower.append((char) Chars.asciiLower(word.charAt(i)));
        }
        return lower.toString();
    }
}
