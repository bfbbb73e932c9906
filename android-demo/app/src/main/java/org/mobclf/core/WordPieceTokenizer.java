package org.mobclf.core;

import java.io.File;
import java.io.IOException;
import java.text.Normalizer;
import java.util.List;
import java.util.Locale;

import org.json.JSONObject;

/**
 * WordPiece with BERT's rules as HF {@code tokenizers} runs them ({@code toolkit/mobclf/text/wordpiece.py}).
 *
 * <ol>
 * <li>Normalise ({@code BertNormalizer}): drop NUL, U+FFFD and control characters (Cc, Cf, Co except tab,
 * newline and carriage return), map whitespace to a space, put spaces around CJK ideographs, and with
 * {@code lowercase} strip accents (NFD, drop non-spacing marks) and lower-case.</li>
 * <li>Pre-tokenise ({@code BertPreTokenizer}): split on whitespace and around every punctuation character (ASCII
 * punctuation and Unicode P*).</li>
 * <li>WordPiece: greedy longest match first, continuation pieces prefixed {@code ##}; a word longer than 100 code
 * points, or with a piece not in the vocabulary, becomes one {@code [UNK]}.</li>
 * </ol>
 * The character classes are {@code tokenizers}' own ({@link BertUnicode}, generated from the installed library),
 * not the JVM's, whose Unicode version differs; NFD and lower-casing come from the platform.
 */
final class WordPieceTokenizer extends Tokenizer {
    private static final int MAX_WORD_CHARS = 100;
    private static final String CONTINUATION = "##";
    private static final String UNKNOWN = "[UNK]";

    /** What {@link #normalize} makes of each ASCII code point ({@code DROPPED}: nothing), found once by its rules. */
    private final char[] asciiNormalized = new char[128];
    private static final char DROPPED = 0xFFFF;

    WordPieceTokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        super(vocab, spec, directory);
        StringBuilder normalized = new StringBuilder();
        for (int codePoint = 0; codePoint < asciiNormalized.length; codePoint++) {
            normalized.setLength(0);
            normalize(codePoint, normalized);
            asciiNormalized[codePoint] = normalized.length() == 0 ? DROPPED : normalized.charAt(0);
        }
    }

    /**
     * Normalises one code point at a time and pre-tokenises as it goes, so that a long article stops being read
     * once {@code limit} tokens are found (every rule depends on one code point only).
     */
    @Override
    protected void tokenize(String text, int limit, List<String> out) {
        StringBuilder normalized = new StringBuilder(8);
        StringBuilder word = new StringBuilder();
        for (int index = 0; index < text.length() && out.size() < limit; ) {
            int codePoint = text.codePointAt(index);
            index += Character.charCount(codePoint);
            normalized.setLength(0);
            if (codePoint < asciiNormalized.length) {
                if (asciiNormalized[codePoint] != DROPPED) {
                    normalized.append(asciiNormalized[codePoint]);
                }
            } else {
                normalize(codePoint, normalized);
            }
            for (int at = 0; at < normalized.length(); ) {
                int character = normalized.codePointAt(at);
                at += Character.charCount(character);
                boolean punctuation = isPunctuation(character);
                if (!punctuation && !isSplitWhitespace(character)) {
                    word.appendCodePoint(character);
                    continue;
                }
                addPieces(word, limit, out);
                if (punctuation) {
                    addPieces(new StringBuilder().appendCodePoint(character), limit, out);
                }
            }
        }
        addPieces(word, limit, out);
    }

    /** {@code BertNormalizer} on one code point, appended to {@code out} (nothing, or one or more code points). */
    private void normalize(int codePoint, StringBuilder out) {
        if (BertUnicode.inRanges(BertUnicode.CONTROL, codePoint)) {
            return;
        }
        if (BertUnicode.inRanges(BertUnicode.WHITESPACE, codePoint)) {
            out.append(' ');
            return;
        }
        boolean chinese = BertUnicode.inRanges(BertUnicode.CHINESE, codePoint);
        if (chinese) {
            out.append(' ');
        }
        if (lowercase) {
            appendStrippedLowercase(codePoint, out);
        } else {
            out.appendCodePoint(codePoint);
        }
        if (chinese) {
            out.append(' ');
        }
    }

    /** Strip accents (NFD, drop non-spacing marks), then lower-case each remaining code point. */
    private static void appendStrippedLowercase(int codePoint, StringBuilder out) {
        String character = new String(Character.toChars(codePoint));
        String pieces = BertUnicode.inRanges(BertUnicode.DECOMPOSABLE, codePoint)
                ? Normalizer.normalize(character, Normalizer.Form.NFD) : character;
        for (int index = 0; index < pieces.length(); ) {
            int piece = pieces.codePointAt(index);
            index += Character.charCount(piece);
            if (!BertUnicode.inRanges(BertUnicode.NONSPACING_MARK, piece)) {
                out.append(new String(Character.toChars(piece)).toLowerCase(Locale.ROOT));
            }
        }
    }

    /** WordPiece over {@code word} (emptied afterwards), appended to {@code out} up to {@code limit} tokens. */
    private void addPieces(StringBuilder pending, int limit, List<String> out) {
        String word = pending.toString();
        pending.setLength(0);
        if (word.isEmpty() || out.size() >= limit) {
            return;
        }
        int length = word.codePointCount(0, word.length());
        if (length > MAX_WORD_CHARS) {
            out.add(UNKNOWN);
            return;
        }
        int firstPiece = out.size();
        for (int start = 0; start < word.length(); ) {
            String piece = null;
            int end = word.length();
            while (end > start) {
                String candidate = start > 0 ? CONTINUATION + word.substring(start, end) : word.substring(0, end);
                if (contains(candidate)) {
                    piece = candidate;
                    break;
                }
                end = word.offsetByCodePoints(end, -1);
            }
            if (piece == null) {
                out.subList(firstPiece, out.size()).clear();
                out.add(UNKNOWN);
                return;
            }
            out.add(piece);
            start = end;
        }
        while (out.size() > limit) {
            out.remove(out.size() - 1);
        }
    }

    private static final boolean[] ASCII_SPLIT_WHITESPACE = asciiIn(BertUnicode.SPLIT_WHITESPACE);
    private static final boolean[] ASCII_PUNCTUATION = asciiIn(BertUnicode.PUNCTUATION);

    /** Which ASCII code points the {@code ranges} hold: a table lookup instead of a search for most text. */
    private static boolean[] asciiIn(int[] ranges) {
        boolean[] table = new boolean[128];
        for (int codePoint = 0; codePoint < table.length; codePoint++) {
            table[codePoint] = BertUnicode.inRanges(ranges, codePoint);
        }
        return table;
    }

    private static boolean isSplitWhitespace(int codePoint) {
        return codePoint < 128 ? ASCII_SPLIT_WHITESPACE[codePoint]
                : BertUnicode.inRanges(BertUnicode.SPLIT_WHITESPACE, codePoint);
    }

    private static boolean isPunctuation(int codePoint) {
        return codePoint < 128 ? ASCII_PUNCTUATION[codePoint]
                : BertUnicode.inRanges(BertUnicode.PUNCTUATION, codePoint);
    }
}
