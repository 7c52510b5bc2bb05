#!/usr/bin/env python3
"""Deterministic tokenizer test corpus for slmd (imported by make_tok_reference.py).

corpus() returns a list of (bytes, add_special, parse_special): English prose, source code in
several languages, text in more than ten scripts, emoji (ZWJ sequences, flags, skin tones), runs of
spaces/tabs/newlines, digits and long numbers, contractions (upper case too), special tokens of
SmolLM2 and Gemma 3 written in the text, and invalid UTF-8 byte strings. Same output on every run
(a seeded random.Random; no dependence on hash order or the clock).

Inputs are kept away from one byte pattern: a lead byte F4..F7 followed by three continuation
bytes that decode (leniently, as llama.cpp does) to a code point above U+10FFFF. llama.cpp's BPE
pre-tokenizer throws an uncaught exception on those (the process aborts), so there is no
reference to compare with; slmd's rule for them is in docs/tokenizer.md.

    python3 tests/golden/make_tok_corpus.py   # prints a summary
"""

import random

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "She sells sea shells by the sea shore; the shells she sells are surely seashells.",
    "Dr. Smith's office is at 221B Baker Street, London NW1 6XE.",
    "Please send the report by Friday, 3 p.m. at the latest!",
    "Why do we park on driveways and drive on parkways?",
    "The committee's decision -- announced yesterday -- surprised everyone.",
    "E-mail me at jane.doe@example.com or call +1 (555) 010-2030.",
    "\"Hello,\" he said. 'Goodbye,' she replied...",
    "A well-known self-driving car company's CEO resigned.",
    "The temperature dropped to -40 degrees, where Celsius and Fahrenheit meet.",
    "Visit https://example.org/path?query=1&lang=en#section for details.",
    "Honeybees communicate the location of food through a waggle dance.",
    "To be, or not to be, that is the question.",
    "Ask not what your country can do for you.",
    "Machine learning models are trained on large datasets.",
    "The mitochondria is the powerhouse of the cell.",
    "All work and no play makes Jack a dull boy.",
]

CONTRACTIONS = [
    "I'm", "you're", "he's", "she'll", "we've", "they'd", "don't", "can't", "won't", "it's",
    "I'M", "YOU'RE", "HE'S", "SHE'LL", "WE'VE", "THEY'D", "DON'T", "IT'S", "We'Re", "It'S",
    "they'Ll", "o'clock", "rock'n'roll", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S",
    "'T", "'RE", "'Ve", "'M", "'LL", "'D", "''", "' s", "'x", "James's", "the '90s",
]

CODE = [
    "int main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (let i = 0; i < arr.length; i++) { console.log(`item ${i}: ${arr[i]}`); }",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{:?}\", v);\n}",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello, 世界\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY id DESC;",
    "#!/bin/sh\nset -eu\nfor f in *.txt; do wc -l \"$f\"; done 2>/dev/null | sort -n\n",
    "<html>\n  <body class=\"main\">\n    <p>Hello &amp; welcome</p>\n  </body>\n</html>",
    "x = [i**2 for i in range(100) if i % 3 == 0]  # squares\r\n",
    "public static void Main(string[] args) => Console.WriteLine(args?.Length ?? 0);",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "    if (a && b || !c) { x += y << 2; } else { x -= y >> 1; }",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "template<typename T> struct Foo { T* ptr_; ~Foo() { delete ptr_; } };",
    "$ git commit -m \"Fix: off-by-one in parser\" && git push origin HEAD",
    "matrix = [[1, 2, 3],\n          [4, 5, 6]]\n\n\n\nprint(matrix[1][2])",
    "\t\t\treturn self._cache.get(key, default)\n",
    "let re = /^[a-z0-9_-]{3,16}$/i; // username",
    "x:=a[i]+b[j]*c[k]--;y=~z^0xFF|0b1010&0o17;",
    "C:\\Users\\Admin\\Documents\\file (1).txt",
]

SCRIPTS = {
    "latin": ["café", "naïve", "façade", "Ångström", "Straße", "Müller", "żółć", "Dvořák",
              "Tiếng Việt", "São Paulo", "Ærøskøbing", "İstanbul", "ﬁnancial", "Œuvre", "ĳssel"],
    "greek": ["Καλημέρα", "κόσμε", "Ελληνικά", "φιλοσοφία", "ΑΒΓΔ", "ά έ ή"],
    "cyrillic": ["Привет", "мир", "Москва", "Ёлка", "Україна", "Здравствуйте, друзья!", "ЩИ"],
    "arabic": ["مرحبا", "بالعالم", "اللغة العربية", "٠١٢٣٤٥٦٧٨٩", "السَّلَامُ عَلَيْكُمْ"],
    "hebrew": ["שלום", "עולם", "עִבְרִית", "תודה רבה"],
    "devanagari": ["नमस्ते", "दुनिया", "हिन्दी भाषा", "१२३४", "क्षत्रिय"],
    "thai": ["สวัสดี", "ภาษาไทย", "ขอบคุณครับ", "๑๒๓"],
    "cjk": ["你好", "世界", "中文分词测试", "漢字", "北京市朝阳区", "一二三四五"],
    "hangul": ["안녕하세요", "세계", "한국어", "ㄱㄴㄷ"],
    "japanese": ["こんにちは", "カタカナ", "ひらがな", "日本語のテキスト", "ｶﾀｶﾅ", "東京タワー"],
    "armenian": ["Բարեւ", "աշխարհ"],
    "georgian": ["გამარჯობა", "მსოფლიო"],
    "tamil": ["வணக்கம்", "தமிழ்"],
    "bengali": ["নমস্কার", "বাংলা"],
    "ethiopic": ["ሰላም", "ዓለም"],
    "misc": ["½ ¾ ² ³", "Ⅻ ⅷ", "①②③", "℃ ℉ № ™ ©", "∑∫√∞≠≤≥", "→ ← ↑ ↓", "€£¥₹₿",
             "\u00a0nbsp\u00a0", "\u3000ideographic\u3000space", "zero\u200bwidth", "\u2028\u2029",
             "\u0085nel", "soft\u00adhyphen", "e\u0301 n\u0303", "\ufeffbom", "\u180e"],
}

EMOJI = ["😀", "🙂", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "❤️", "🇺🇸", "🇯🇵", "🇩🇪🇫🇷",
         "🤷‍♀️", "🐍", "🚀✨", "🔥🔥🔥", "☕", "1️⃣", "©️", "👩‍❤️‍💋‍👨", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>",
            "<jupyter_code>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>",
            "<unk>", "<mask>", "<unused5>", "<unused6241>", "[multimodal]", "<table>", "</td>",
            "<start_of_image>", "<|im_start", "im_end|>", "<<|im_end|>>", "<end_of_turn",
            "<|im_start|><|im_start|>", "<|eot_id|>"]

WS = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ",
      "\t \n", "        ", " " * 33, "\n" * 35, "\u00a0", "\u3000", " \t\n\r\x0b\x0c"]


def _lenient_cpts(b):
    """llama.cpp's unicode_cpts_from_utf8: returns None if a code point would exceed U+10FFFF."""
    i, n = 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if not c & 0x40:
            i += 1
            continue
        need = 1 if not c & 0x20 else 2 if not c & 0x10 else 3 if not c & 0x08 else -1
        if need < 0 or i + need >= n:
            i += 1
            continue
        if all((b[i + k] & 0xC0) == 0x80 for k in range(1, need + 1)):
            if need == 3:
                cp = ((c & 7) << 18) | ((b[i + 1] & 0x3F) << 12) | ((b[i + 2] & 0x3F) << 6) | (b[i + 3] & 0x3F)
                if cp > 0x10FFFF:
                    return None
            i += need + 1
        else:
            i += 1
    return True


def _invalid(rng):
    kinds = [
        lambda: bytes([rng.randrange(0x80, 0x100)]),
        lambda: bytes([0xE2, 0x82]),                # truncated 3-byte
        lambda: bytes([0xF0, 0x9F, 0x98]),          # truncated 4-byte
        lambda: bytes([0xC3]),                      # lone lead
        lambda: bytes([0x80, 0xBF]),                # lone continuations
        lambda: bytes([0xC0, 0x80]),                # overlong NUL
        lambda: bytes([0xE0, 0x80, 0xAF]),          # overlong '/'
        lambda: bytes([0xED, 0xA0, 0x80]),          # surrogate
        lambda: bytes([0xFF, 0xFE]),
        lambda: bytes([0xF8, 0x88, 0x80, 0x80, 0x80]),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))),
    ]
    while True:
        b = rng.choice(kinds)()
        if _lenient_cpts(b):
            return b


def _number(rng):
    k = rng.randrange(6)
    if k == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 25)))
    if k == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 8)}f}"
    if k == 2:
        return f"{rng.randrange(1, 10**9):,}"
    if k == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if k == 4:
        return "0x%X" % rng.randrange(1 << 32)
    return "".join(rng.choice("0123456789") for _ in range(rng.randrange(30, 80)))


def _word(rng):
    k = rng.randrange(10)
    if k < 3:
        return rng.choice(rng.choice(PROSE).split())
    if k < 5:
        return rng.choice(rng.choice(list(SCRIPTS.values())))
    if k == 5:
        return rng.choice(CONTRACTIONS)
    if k == 6:
        return rng.choice(EMOJI)
    if k == 7:
        return _number(rng)
    if k == 8:
        return rng.choice(SPECIALS)
    return rng.choice(["(", ")", ",", ".", "!?", "...", "--", "/", "\\", "\"", "'", "#", "@", "$%",
                       "&&", "||", "==", "->", "::", ";", "`", "~", "^", "*", "+", "=", "<", ">"])


def _mix(rng, n):
    parts = []
    for _ in range(n):
        parts.append(_word(rng))
        parts.append(rng.choice([" ", " ", " ", "", "\n", "\t", "  ", ", "]))
    return "".join(parts)


def corpus():
    rng = random.Random(20240611)
    items = []

    def add(s):
        b = s if isinstance(s, bytes) else s.encode("utf-8")
        r = rng.random()
        # a mix of flag settings; parse_special more often, as the daemon uses it for chat prompts
        add_special = r < 0.5
        parse_special = rng.random() < 0.7
        items.append((b, add_special, parse_special))

    for s in PROSE + CODE + CONTRACTIONS + EMOJI + SPECIALS + WS:
        add(s)
    for words in SCRIPTS.values():
        for w in words:
            add(w)
            add(" " + w)
            add(w + " " + w.upper() + "\n")
    add("")
    add(" ")
    add("a")
    for _ in range(300):
        add(" ".join(rng.sample(PROSE, rng.randrange(1, 4))))
    for _ in range(150):
        add(rng.choice(CODE) + rng.choice(CODE)[: rng.randrange(5, 60)])
    for _ in range(200):
        name, words = rng.choice(list(SCRIPTS.items()))
        add(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 8))))
    for _ in range(150):
        add("".join(rng.choice(EMOJI) + rng.choice(["", " ", "\n", "a"]) for _ in range(rng.randrange(1, 6))))
    for _ in range(150):
        add("".join(rng.choice(WS) + rng.choice(["x", "", "foo", "1", "é", ".", "日"]) for _ in range(rng.randrange(1, 6))))
    for _ in range(150):
        add(" ".join(_number(rng) for _ in range(rng.randrange(1, 4))))
    for _ in range(150):
        add(" ".join(rng.choice(CONTRACTIONS) for _ in range(rng.randrange(1, 6))))
    for _ in range(200):
        add(rng.choice(SPECIALS) + rng.choice(["user\n", "assistant\n", "", " hi", "\n"]) + _mix(rng, rng.randrange(0, 6))
            + rng.choice(SPECIALS))
    for _ in range(150):
        head = _mix(rng, rng.randrange(0, 4)).encode("utf-8")
        tail = _mix(rng, rng.randrange(0, 4)).encode("utf-8")
        add(head + _invalid(rng) + tail)
    for _ in range(600):
        add(_mix(rng, rng.randrange(1, 16)))
    return items


if __name__ == "__main__":
    items = corpus()
    total = sum(len(b) for b, _, _ in items)
    bad = 0
    for b, _, _ in items:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    print(f"{len(items)} strings, {total} bytes, {bad} not valid UTF-8")
