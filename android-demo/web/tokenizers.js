// The three mobclf tokenizers (char, jieba, wordpiece) in plain JavaScript, giving exactly the ids of
// toolkit/mobclf/text/*.py (tests/test_device_tokenizers.py checks 6,031 texts and every code point of
// planes 0-3 and 14). Runs in browsers and in Node.
//
//   const tokenizer = await loadTokenizer(name => readTextSomehow("tokenizer/" + name));
//   tokenizer.encode("央行宣布降准")  // → [2, 311, 95, ..., 3]
//
// Texts are walked by Unicode code point (never by UTF-16 unit), as Python's str indices are.

import {
  CHINESE, CONTROL, DECOMPOSABLE, NONSPACING_MARK, PUNCTUATION, SPLIT_WHITESPACE, WHITESPACE, inRanges,
} from "./bert-unicode.js";

export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

// ---- shared rules (text/base.py) ---------------------------------------------------------------------------

// Exactly the code points for which Python's str.isspace() is true, plus zero-width characters (SKIPPED_CHARS).
const SKIPPED = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
  0x200b, 0x200c, 0x200d, 0x2060, 0xfeff,
]);

/** Code points of `text` (numbers). */
function codePoints(text) {
  const points = [];
  for (const char of text) points.push(char.codePointAt(0));
  return points;
}

const isAsciiUpper = (cp) => cp >= 0x41 && cp <= 0x5a;
const isAsciiAlnum = (cp) => (cp >= 0x30 && cp <= 0x39) || isAsciiUpper(cp) || (cp >= 0x61 && cp <= 0x7a);

/** normalize_chars: full-width ASCII variants U+FF01..U+FF5E to ASCII, then (if lowercase) A-Z to a-z. */
function normalizeChar(cp, lowercase) {
  if (cp >= 0xff01 && cp <= 0xff5e) cp -= 0xfee0;
  if (lowercase && isAsciiUpper(cp)) cp += 0x20;
  return cp;
}

/** ascii_lower: lower-case A-Z only. */
function asciiLower(word) {
  return word.replace(/[A-Z]+/g, (run) => run.toLowerCase());
}

/** vocab.txt → tokens (read_vocab: "\n" line ends, a trailing "\r" dropped, final empty line ignored). */
export function parseVocab(text) {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line));
}

class Tokenizer {
  constructor(spec, vocab) {
    this.spec = spec;
    this.maxLength = spec.max_length;
    this.addSpecialTokens = spec.add_special_tokens;
    this.lowercase = spec.lowercase;
    this.vocab = vocab;
    this.tokenIds = new Map();
    vocab.forEach((token, index) => this.tokenIds.set(token, index)); // a duplicate keeps its last line, as in Python
    for (const token of SPECIAL_TOKENS) {
      if (!this.tokenIds.has(token)) throw new Error(`the vocabulary lacks the special token ${token}`);
    }
    [this.padId, this.unkId, this.clsId, this.sepId, this.maskId] = SPECIAL_TOKENS.map((t) => this.tokenIds.get(t));
  }

  /** Token strings of `text`, before id lookup and truncation (subclasses). */
  tokenize(text) { // eslint-disable-line no-unused-vars
    throw new Error("not implemented");
  }

  /** Ids of one text: truncated to max_length, with [CLS] .. [SEP] if add_special_tokens; never empty. */
  encode(text) {
    const budget = this.addSpecialTokens ? this.maxLength - 2 : this.maxLength;
    const ids = this.tokenize(text).slice(0, budget).map((token) => this.tokenIds.get(token) ?? this.unkId);
    if (this.addSpecialTokens) return [this.clsId, ...ids, this.sepId];
    return ids.length ? ids : [this.unkId];
  }
}

// ---- char (text/char.py) -----------------------------------------------------------------------------------

export class CharTokenizer extends Tokenizer {
  tokenize(text) {
    const tokens = [];
    let run = "";
    for (const char of text) {
      const cp = normalizeChar(char.codePointAt(0), this.lowercase);
      if (isAsciiAlnum(cp)) {
        run += String.fromCodePoint(cp);
        continue;
      }
      if (run) tokens.push(run);
      run = "";
      if (!SKIPPED.has(cp)) tokens.push(String.fromCodePoint(cp));
    }
    if (run) tokens.push(run);
    return tokens;
  }
}

// ---- jieba (text/jieba_words.py: jieba 0.42.1 cut(HMM=False) over jieba_dict.txt) --------------------------

// jieba's re_han_default: runs of these are segmented with the dictionary, everything else is one word per char.
const HAN_RUN = /[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]+/g;

/** jieba's gen_pfdict: word → frequency, every prefix of a word with frequency 0 unless listed; the total. */
export function parseJiebaDictionary(text) {
  const freq = new Map();
  let total = 0;
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((raw, index) => {
    const line = raw.replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, ""); // bytes.strip(): ASCII whitespace only
    const [word, count] = line.split(" ");
    if (word === undefined || count === undefined || !/^\s*[+-]?\d+\s*$/.test(count)) {
      throw new Error(`invalid dictionary entry at line ${index + 1}: ${line}`);
    }
    const frequency = Number.parseInt(count, 10);
    freq.set(word, frequency);
    total += frequency;
    let prefix = "";
    for (const char of word) {
      prefix += char;
      if (!freq.has(prefix)) freq.set(prefix, 0);
    }
  });
  return { freq, total };
}

export class JiebaTokenizer extends Tokenizer {
  constructor(spec, vocab, dictionaryText) {
    super(spec, vocab);
    if (spec.hmm) throw new Error("this jieba tokenizer uses HMM, which a device cannot reproduce; rebuild it without");
    const { freq, total } = parseJiebaDictionary(dictionaryText);
    this.freq = freq;
    this.logTotal = Math.log(total);
  }

  /** jieba's __cut_DAG_NO_HMM over one run of HAN_RUN characters; pushes words onto `words`. */
  cutRun(run, words) {
    const chars = Array.from(run);
    const n = chars.length;
    const starts = new Array(n + 1); // UTF-16 offset of each code point, so substrings are cheap
    starts[0] = 0;
    for (let i = 0; i < n; i++) starts[i + 1] = starts[i] + chars[i].length;
    const piece = (from, to) => run.slice(starts[from], starts[to]); // code points from..to-1
    // get_DAG: for each start k, the ends i of dictionary words (freq > 0) run[k..i], or k alone.
    const dag = new Array(n);
    for (let k = 0; k < n; k++) {
      const ends = [];
      let i = k;
      let frag = chars[k];
      while (i < n && this.freq.has(frag)) {
        if (this.freq.get(frag)) ends.push(i);
        i += 1;
        frag = piece(k, i + 1);
      }
      if (!ends.length) ends.push(k);
      dag[k] = ends;
    }
    // calc: best[idx] = max over ends x of (log(freq or 1) - log(total) + best[x + 1], x), ties to the larger x.
    const bestScore = new Float64Array(n + 1);
    const bestEnd = new Int32Array(n + 1);
    for (let idx = n - 1; idx >= 0; idx--) {
      let score = -Infinity;
      let end = -1;
      for (const x of dag[idx]) {
        const candidate = Math.log(this.freq.get(piece(idx, x + 1)) || 1) - this.logTotal + bestScore[x + 1];
        if (candidate > score || (candidate === score && x > end)) {
          score = candidate;
          end = x;
        }
      }
      bestScore[idx] = score;
      bestEnd[idx] = end;
    }
    // Walk the route; consecutive single [a-zA-Z0-9] characters join into one word.
    let buffer = "";
    for (let x = 0; x < n;) {
      const y = bestEnd[x] + 1;
      const word = piece(x, y);
      if (y - x === 1 && isAsciiAlnum(word.codePointAt(0))) {
        buffer += word;
      } else {
        if (buffer) words.push(buffer);
        buffer = "";
        words.push(word);
      }
      x = y;
    }
    if (buffer) words.push(buffer);
  }

  tokenize(text) {
    let normalized = "";
    for (const char of text) normalized += String.fromCodePoint(normalizeChar(char.codePointAt(0), false));
    const words = [];
    const other = (from, to) => { // outside runs every code point is a word; whitespace words are dropped
      for (const char of normalized.slice(from, to)) {
        if (!SKIPPED.has(char.codePointAt(0))) words.push(char);
      }
    };
    let last = 0;
    for (const match of normalized.matchAll(HAN_RUN)) {
      other(last, match.index);
      this.cutRun(match[0], words);
      last = match.index + match[0].length;
    }
    other(last, normalized.length);
    return this.lowercase ? words.map(asciiLower) : words;
  }
}

// ---- wordpiece (text/wordpiece.py: HF BertNormalizer + BertPreTokenizer + WordPiece) -----------------------

/** The CJK blocks of BertNormalizer's is_chinese_char. */
export class WordPieceTokenizer extends Tokenizer {
  constructor(spec, vocab) {
    super(spec, vocab);
    this.maxInputCharsPerWord = 100;
    this.prefix = "##";
    this.stripAccents = this.lowercase; // BertNormalizer(strip_accents=None) follows lowercase
  }

  /** BertNormalizer(clean_text, handle_chinese_chars, strip_accents, lowercase), one code point at a time. */
  normalize(text) {
    const out = [];
    for (const char of text) {
      const cp = char.codePointAt(0);
      if (inRanges(CONTROL, cp)) continue; // clean_text: drop NUL, U+FFFD, Cc/Cf/Co
      if (inRanges(WHITESPACE, cp)) { // clean_text: whitespace to a space
        out.push(0x20);
        continue;
      }
      const chinese = inRanges(CHINESE, cp);
      if (chinese) out.push(0x20);
      let pieces = [cp];
      if (this.stripAccents) { // NFD, then drop nonspacing marks
        if (inRanges(DECOMPOSABLE, cp)) pieces = codePoints(char.normalize("NFD"));
        pieces = pieces.filter((p) => !inRanges(NONSPACING_MARK, p));
      }
      if (this.lowercase) { // Unicode lower-case of each code point (Rust char::to_lowercase: no final sigma)
        pieces = pieces.flatMap((p) => codePoints(String.fromCodePoint(p).toLowerCase()));
      }
      out.push(...pieces);
      if (chinese) out.push(0x20);
    }
    return out;
  }

  /** BertPreTokenizer: split on whitespace (dropped) and around every punctuation character (kept alone). */
  preTokenize(points) {
    const words = [];
    let word = [];
    for (const cp of points) {
      if (inRanges(SPLIT_WHITESPACE, cp) || inRanges(PUNCTUATION, cp)) {
        if (word.length) words.push(word);
        word = [];
        if (!inRanges(SPLIT_WHITESPACE, cp)) words.push([cp]);
      } else {
        word.push(cp);
      }
    }
    if (word.length) words.push(word);
    return words;
  }

  /** WordPiece: greedy longest match first; an over-long word or one with an unknown piece is one [UNK]. */
  wordPieces(word) {
    if (word.length > this.maxInputCharsPerWord) return ["[UNK]"];
    const pieces = [];
    for (let start = 0; start < word.length;) {
      let end = word.length;
      let found = null;
      while (start < end) {
        const piece = (start > 0 ? this.prefix : "") + String.fromCodePoint(...word.slice(start, end));
        if (this.tokenIds.has(piece)) {
          found = piece;
          break;
        }
        end -= 1;
      }
      if (found === null) return ["[UNK]"];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }

  tokenize(text) {
    return this.preTokenize(this.normalize(text)).flatMap((word) => this.wordPieces(word));
  }
}

// ---- loading -----------------------------------------------------------------------------------------------

/**
 * A tokenizer from a saved tokenizer directory. `readText(name)` returns (a promise of) the text of a file in it:
 * `fetch` in a browser, `fs.readFile` in Node. `spec` is tokenizer.json's content if already at hand.
 */
export async function loadTokenizer(readText, spec = null) {
  spec = spec ?? JSON.parse(await readText("tokenizer.json"));
  const vocab = parseVocab(await readText(spec.vocab_file));
  switch (spec.type) {
    case "char":
      return new CharTokenizer(spec, vocab);
    case "jieba":
      return new JiebaTokenizer(spec, vocab, await readText(spec.dictionary_file));
    case "wordpiece":
      return new WordPieceTokenizer(spec, vocab);
    default:
      throw new Error(`unknown tokenizer type ${JSON.stringify(spec.type)}`);
  }
}
