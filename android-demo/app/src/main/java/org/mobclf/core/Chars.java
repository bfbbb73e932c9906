package org.mobclf.core;

/**
 * The character rules the char and jieba tokenizers share ({@code toolkit/mobclf/text/base.py}); all work on
 * Unicode code points, never on UTF-16 units.
 */
final class Chars {
    private Chars() {
    }

    /** Exactly the code points for which Python's {@code str.isspace()} is true, plus the zero-width ones. */
    private static final String SKIPPED = "\t\n\u000b\f\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680\u2000\u2001"
            + "\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
            + "\u200b\u200c\u200d\u2060\ufeff";

    /** Whitespace or zero-width: separates tokens and is dropped. */
    static boolean isSkipped(int codePoint) {
        return codePoint < 0x10000 && SKIPPED.indexOf(codePoint) >= 0;
    }

    /** Full-width ASCII variants U+FF01..U+FF5E to ASCII, then (if {@code lowercase}) A-Z to a-z. */
    static int normalize(int codePoint, boolean lowercase) {
        if (codePoint >= 0xFF01 && codePoint <= 0xFF5E) {
            codePoint -= 0xFEE0;
        }
        return lowercase ? asciiLower(codePoint) : codePoint;
    }

    static int asciiLower(int codePoint) {
        return codePoint >= 'A' && codePoint <= 'Z' ? codePoint + ('a' - 'A') : codePoint;
    }

    static boolean isAsciiAlphanumeric(int codePoint) {
        return (codePoint >= 'a' && codePoint <= 'z') || (codePoint >= 'A' && codePoint <= 'Z')
                || (codePoint >= '0' && codePoint <= '9');
    }
}
