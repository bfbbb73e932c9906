package org.mobclf.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.json.JSONException;
import org.json.JSONObject;

/**
 * Text to token ids for one vocabulary, with exactly the rules of mobclf's Python tokenizers
 * ({@code toolkit/mobclf/text/base.py}): a subclass only says how a text splits into tokens.
 *
 * <p>A token's id is its line number in {@code vocab.txt}; an unknown token gets {@code [UNK]}'s id. With
 * special tokens an encoding is {@code [CLS] t1 .. tn [SEP]} with {@code n <= maxLength - 2}, without them
 * {@code t1 .. tn} with {@code n <= maxLength}; tokens past the limit are dropped. A text without tokens encodes
 * as {@code [CLS] [SEP]}, or as a single {@code [UNK]} without special tokens.
 */
public abstract class Tokenizer {
    static final Charset UTF8 = Charset.forName("UTF-8");
    private static final String[] SPECIAL_TOKENS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

    private final Map<String, Integer> tokenIds;
    private final int maxLength;
    private final boolean addSpecialTokens;
    protected final boolean lowercase;
    private final int padId;
    private final int unkId;
    private final int clsId;
    private final int sepId;

    protected Tokenizer(List<String> vocab, JSONObject spec, File directory) throws IOException {
        tokenIds = new HashMap<String, Integer>(vocab.size() * 2);
        for (int id = 0; id < vocab.size(); id++) {
            tokenIds.put(vocab.get(id), id);
        }
        int[] special = new int[SPECIAL_TOKENS.length];
        for (int i = 0; i < SPECIAL_TOKENS.length; i++) {
            Integer id = tokenIds.get(SPECIAL_TOKENS[i]);
            if (id == null) {
                throw new IOException(new File(directory, spec.optString("vocab_file")) + ": the vocabulary lacks "
                        + SPECIAL_TOKENS[i] + "; re-export the bundle");
            }
            special[i] = id;
        }
        padId = special[0];
        unkId = special[1];
        clsId = special[2];
        sepId = special[3];
        try {
            maxLength = spec.getInt("max_length");
            addSpecialTokens = spec.getBoolean("add_special_tokens");
            lowercase = spec.getBoolean("lowercase");
        } catch (JSONException err) {
            throw new IOException(new File(directory, SPEC_FILE) + ": " + err.getMessage() + "; re-export the bundle");
        }
    }

    /** The name of the spec file in a saved tokenizer directory. */
    public static final String SPEC_FILE = "tokenizer.json";

    /** Rebuild the tokenizer saved in {@code directory} ({@code tokenizer.json}, {@code vocab.txt}, ...). */
    public static Tokenizer load(File directory) throws IOException {
        File specFile = new File(directory, SPEC_FILE);
        JSONObject spec = readJson(specFile);
        String type = spec.optString("type");
        List<String> vocab = readVocab(new File(directory, spec.optString("vocab_file", "vocab.txt")));
        if (type.equals("char")) {
            return new CharTokenizer(vocab, spec, directory);
        }
        if (type.equals("jieba")) {
            return new JiebaTokenizer(vocab, spec, directory);
        }
        if (type.equals("wordpiece")) {
            return new WordPieceTokenizer(vocab, spec, directory);
        }
        throw new IOException(specFile + ": unknown tokenizer type '" + type + "' (char, jieba or wordpiece)");
    }

    /** Append the tokens of {@code text} to {@code out}, stopping once it holds {@code limit} tokens. */
    protected abstract void tokenize(String text, int limit, List<String> out);

    /** The ids of {@code text}: truncated, with {@code [CLS]}/{@code [SEP]} if the spec adds special tokens. */
    public int[] encode(String text) {
        List<String> tokens = new ArrayList<String>();
        tokenize(text, addSpecialTokens ? maxLength - 2 : maxLength, tokens);
        if (tokens.isEmpty() && !addSpecialTokens) {
            return new int[] {unkId};
        }
        int offset = addSpecialTokens ? 1 : 0;
        int[] ids = new int[tokens.size() + 2 * offset];
        for (int i = 0; i < tokens.size(); i++) {
            Integer id = tokenIds.get(tokens.get(i));
            ids[i + offset] = id == null ? unkId : id;
        }
        if (addSpecialTokens) {
            ids[0] = clsId;
            ids[ids.length - 1] = sepId;
        }
        return ids;
    }

    public int maxLength() {
        return maxLength;
    }

    public int padId() {
        return padId;
    }

    /** Whether the vocabulary holds {@code token}. */
    protected boolean contains(String token) {
        return tokenIds.containsKey(token);
    }

    static byte[] readBytes(File file) throws IOException {
        InputStream input = new FileInputStream(file);
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            byte[] buffer = new byte[1 << 16];
            for (int read; (read = input.read(buffer)) > 0; ) {
                bytes.write(buffer, 0, read);
            }
            return bytes.toByteArray();
        } finally {
            input.close();
        }
    }

    static JSONObject readJson(File file) throws IOException {
        try {
            return new JSONObject(new String(readBytes(file), UTF8));
        } catch (JSONException err) {
            throw new IOException(file + ": not valid JSON (" + err.getMessage() + "); re-export the bundle");
        }
    }

    /** One token per line, UTF-8, {@code \n} line ends (a trailing {@code \r} is dropped), no empty lines. */
    static List<String> readVocab(File file) throws IOException {
        String[] lines = new String(readBytes(file), UTF8).split("\n", -1);
        int count = lines[lines.length - 1].isEmpty() ? lines.length - 1 : lines.length;
        List<String> vocab = new ArrayList<String>(count);
        for (int i = 0; i < count; i++) {
            String token = lines[i].endsWith("\r") ? lines[i].substring(0, lines[i].length() - 1) : lines[i];
            if (token.isEmpty()) {
                throw new IOException(file + ":" + (i + 1) + ": empty line in the vocabulary; re-export the bundle");
            }
            vocab.add(token);
        }
        return vocab;
    }
}
