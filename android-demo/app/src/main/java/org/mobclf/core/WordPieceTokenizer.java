package org.mobclf.core;

import java.io.File;
import java.io.IOException;
import java.text.Normalizer;
import java.util.List;

import org.json.JSONObject;

/**
 * WordPiece with BERT's rules as HF {@code tokenizers} runs them ({@code toolkit/mobclf/text/wordpiece.py}).
 *
 * <ol>
 * <li>Normalise ({@code BertNormalizer}): drop NUL, U+FFFD and control characters (Unicode Cc, Cf, Cs, Co, Cn,
 * except tab, newline and carriage return), map whitespace to a space, put spaces around CJK ideographs, and with
 * {@code lowercase} strip accents (NFD, drop non-spacing marks) and lower-case.</li>
 * <li>Pre-tokenise ({@code BertPreTokenizer}): split on whitespace and around every punctuation character (ASCII
 * punctuation and Unicode Pc, Pd, Ps, Pe, Pi, Pf, Po).</li>
 * <li>WordPiece: greedy longest match first, continuation pieces prefixed {@code ##}; a word longer than 100 code
 * points, or with a piece not in the vocabulary, becomes one {@code [UNK]}.</li>
 * </ol>
 * Character classes come from the JVM's Unicode tables, so a code point assigned after those tables (a new emoji)
 * may be classed differently from {@code tokenizers}'.
 */
final class WordPieceTokenizer extends Tokenizer {
    private static final int MAX_WORD_CHARS = 100;
    private static final String CONTINUATION = "##";

    WordPieceTokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        super(vocab, spec, directory);
    }

    @Override
    protected void tokenize(String text, int limit, List<String> out) {
        String normalized = normalize(text);
        int wordStart = -1;
        for (int index = 0; index <= normalized.length() && out.size() < limit; ) {
            int codePoint = index < normalized.length() ? normalized.codePointAt(index) : ' ';
            boolean boundary = isWhitespace(codePoint) || isPunctuation(codePoint);
            if (boundary && wordStart >= 0) {
                addPieces(normalized.substring(wordStart, index), limit, out);
                wordStart = -1;
            }
            if (index < normalized.length() && isPunctuation(codePoint)) {
                addPieces(new String(Character.toChars(codePoint)), limit, out);
            } else if (!boundary && wordStart < 0) {
                wordStart = index;
            }
            index += index < normalized.length() ? Character.charCount(codePoint) : 1;
        }
    }

    private String normalize(String text) {
        StringBuilder cleaned = new StringBuilder(text.length() + 16);
        for (int index = 0; index < text.length(); ) {
            int codePoint = text.codePointAt(index);
            index += Character.charCount(codePoint);
            if (codePoint == 0 || codePoint == 0xFFFD || isControl(codePoint)) {
                continue;
            }
            if (isWhitespace(codePoint)) {
                cleaned.append(' ');
            } else if (isChineseChar(codePoint)) {
                cleaned.append(' ').appendCodePoint(codePoint).append(' ');
            } else {
                cleaned.appendCodePoint(codePoint);
            }
        }
        if (!lowercase) {
            return cleaned.toString();
        }
        String decomposed = Normalizer.normalize(cleaned, Normalizer.Form.NFD);
        StringBuilder lowered = new StringBuilder(decomposed.length());
        for (int index = 0; index < decomposed.length(); ) {
            int codePoint = decomposed.codePointAt(index);
            index += Character.charCount(codePoint);
            if (Character.getType(codePoint) != Character.NON_SPACING_MARK) {
                lowered.appendCodePoint(Character.toLowerCase(codePoint));
            }
        }
        return lowered.toString();
    }

    private void addPieces(String word, int limit, List<String> out) {
        int length = word.codePointCount(0, word.length());
        if (length > MAX_WORD_CHARS) {
            out.add("[UNK]");
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
                out.add("[UNK]");
                return;
            }
            out.add(piece);
            start = end;
        }
        while (out.size() > limit) {
            out.remove(out.size() - 1);
        }
    }

    /** Rust's {@code char::is_whitespace} (Unicode White_Space), which {@code tokenizers} uses. */
    private static boolean isWhitespace(int codePoint) {
        return (codePoint >= 0x09 && codePoint <= 0x0D) || codePoint == 0x20 || codePoint == 0x85
                || codePoint == 0xA0 || codePoint == 0x1680 || (codePoint >= 0x2000 && codePoint <= 0x200A)
                || codePoint == 0x2028 || codePoint == 0x2029 || codePoint == 0x202F || codePoint == 0x205F
                || codePoint == 0x3000;
    }

    private static boolean isControl(int codePoint) {
        if (codePoint == '\t' || codePoint == '\n' || codePoint == '\r') {
            return false;
        }
        int type = Character.getType(codePoint);
        return type == Character.CONTROL || type == Character.FORMAT || type == Character.SURROGATE
                || type == Character.PRIVATE_USE || type == Character.UNASSIGNED;
    }

    private static boolean isPunctuation(int codePoint) {
        if (codePoint < 0x80) {
            return (codePoint >= 0x21 && codePoint <= 0x2F) || (codePoint >= 0x3A && codePoint <= 0x40)
                    || (codePoint >= 0x5B && codePoint <= 0x60) || (codePoint >= 0x7B && codePoint <= 0x7E);
        }
        switch (Character.getType(codePoint)) {
            case Character.CONNECTOR_PUNCTUATION:
            case Character.DASH_PUNCTUATION:
            case Character.START_PUNCTUATION:
            case Character.END_PUNCTUATION:
            case Character.INITIAL_QUOTE_PUNCTUATION:
            case Character.FINAL_QUOTE_PUNCTUATION:
            case Character.OTHER_PUNCTUATION:
                return true;
            default:
                return false;
        }
    }

    /** BERT's CJK ideograph blocks (the CJK Unified Ideographs and their extensions A-E, compatibility forms). */
    private static boolean isChineseChar(int codePoint) {
        return (codePoint >= 0x4E00 && codePoint <= 0x9FFF) || (codePoint >= 0x3400 && codePoint <= 0x4DBF)
                || (codePoint >= 0x20000 && codePoint <= 0x2A6DF) || (codePoint >= 0x2A700 && codePoint <= 0x2B73F)
                || (codePoint >= 0x2B740 && codePoint <= 0x2B81F) || (codePoint >= 0x2B820 && codePoint <= 0x2CEAF)
                || (codePoint >= 0xF900 && codePoint <= 0xFAFF) || (codePoint >= 0x2F800 && codePoint <= 0x2FA1F);
    }
}
