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

    WordPieceTokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        super(vocab, spec, directory);
    }

    @Override
    protected void tokenize(String text, int limit, List<String> out) {
        String normalized = normalize(text);
        StringBuilder word = new StringBuilder();
        for (int index = 0; index < normalized.length() && out.size() < limit; ) {
            int codePoint = normalized.codePointAt(index);
            index += Character.charCount(codePoint);
            boolean punctuation = isPunctuation(codePoint);
            if (!punctuation && !isSplitWhitespace(codePoint)) {
                word.appendCodePoint(codePoint);
                continue;
            }
            addPieces(word, limit, out);
            if (punctuation) {
                addPieces(new StringBuilder().appendCodePoint(codePoint), limit, out);
            }
        }
        addPieces(word, limit, out);
    }

    private String normalize(String text) {
        StringBuilder normalized = new StringBuilder(text.length() + 16);
        for (int index = 0; index < text.length(); ) {
            int codePoint = text.codePointAt(index);
            index += Character.charCount(codePoint);
            if (BertUnicode.inRanges(BertUnicode.CONTROL, codePoint)) {
                continue;
            }
            if (BertUnicode.inRanges(BertUnicode.WHITESPACE, codePoint)) {
                normalized.append(' ');
                continue;
            }
            boolean chinese = BertUnicode.inRanges(BertUnicode.CHINESE, codePoint);
            if (chinese) {
                normalized.append(' ');
            }
            if (lowercase) {
                appendStrippedLowercase(codePoint, normalized);
            } else {
                normalized.appendCodePoint(codePoint);
            }
            if (chinese) {
                normalized.append(' ');
            }
        }
        return normalized.toString();
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
                String candidate = (start > 0 ? CONTINUATION : "") + word.substring(start, end);
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

    private static boolean isSplitWhitespace(int codePoint) {
        return BertUnicode.inRanges(BertUnicode.SPLIT_WHITESPACE, codePoint);
    }

    private static boolean isPunctuation(int codePoint) {
        return BertUnicode.inRanges(BertUnicode.PUNCTUATION, codePoint);
    }
}
