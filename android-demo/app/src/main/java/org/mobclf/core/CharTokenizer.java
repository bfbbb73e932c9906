package org.mobclf.core;

import java.io.File;
import java.io.IOException;
import java.util.List;

import org.json.JSONObject;

/**
 * Character tokenizer ({@code toolkit/mobclf/text/char.py}): after {@link Chars#normalize}, a maximal run of
 * {@code [A-Za-z0-9]} is one token, every other code point is its own token, whitespace and zero-width
 * characters separate tokens and are dropped.
 */
final class CharTokenizer extends Tokenizer {
    /** The vocabulary's one-character tokens by code point (BMP only): most tokens, found without a new String. */
    private final String[] singleCharTokens = new String[Character.MIN_SUPPLEMENTARY_CODE_POINT];

    CharTokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        super(vocab, spec, directory);
        for (String token : vocab) {
            if (token.length() == 1) {
                singleCharTokens[token.charAt(0)] = token;
            }
        }
    }

    @Override
    protected void tokenize(String text, int limit, List<String> out) {
        StringBuilder run = new StringBuilder();
        for (int index = 0; index < text.length() && out.size() < limit; ) {
            int codePoint = Chars.normalize(text.codePointAt(index), lowercase);
            index += Character.charCount(text.codePointAt(index));
            if (Chars.isAsciiAlphanumeric(codePoint)) {
                run.appendCodePoint(codePoint);
                continue;
            }
            flush(run, out);
            if (!Chars.isSkipped(codePoint) && out.size() < limit) {
                String known = codePoint < singleCharTokens.length ? singleCharTokens[codePoint] : null;
                out.add(known != null ? known : new String(Character.toChars(codePoint)));
            }
        }
        if (out.size() < limit) {
            flush(run, out);
        }
    }

    private static void flush(StringBuilder run, List<String> out) {
        if (run.length() > 0) {
            out.add(run.toString());
            run.setLength(0);
        }
    }
}
