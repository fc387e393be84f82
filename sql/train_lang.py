#!/usr/bin/python3
"""Train the classic PyTorch-tutorial character RNN to tell a word's language, and export it for sqlite-rnn.

Re-run from the repository root:   /usr/bin/python3 sql/train_lang.py
It takes 6 to 9 minutes on 2 CPU cores (torch.set_num_threads(2); 10 epochs of 30 to 70 s, depending on what else
the cores run; the time is printed at the end). Test accuracy: about 78% (chance: 17%).
   /usr/bin/python3 sql/train_lang.py --no-train
only rewrites the fixture from the model already in sql/lang_model.safetensors (10 s).
Needs torch (Debian's python3-torch) and the Debian word lists:
    apt-get install -y wamerican wngerman wfrench witalian wspanish wdutch
It rewrites sql/lang_model.safetensors and tests/fixtures/lang_test.json. Everything is seeded, so a re-run on the
same word lists and torch gives the same model (up to torch's own run-to-run float noise on multi-threaded CPU).

The model is EXACTLY the tutorial's RNN ("NLP From Scratch: Classifying Names with a Character-Level RNN"):
    combined = torch.cat((input, hidden), 1)
    hidden   = self.i2h(combined)          # nn.Linear(I + H, H), no activation
    output   = self.i2o(combined)          # nn.Linear(I + H, O)
    output   = LogSoftmax(output)
with hidden starting at zeros, the input at each step the one-hot of the character (I = len(vocab)), the class the
log-softmax output after the last character, trained with NLLLoss. Only the batching differs from the tutorial:
words of the same length are stacked into a batch (the cell is the same, row by row), trained with Adam.
The state_dict is i2h.weight [H, I+H], i2h.bias [H], i2o.weight [O, I+H], i2o.bias [O] -- sqlite-rnn's "seed"
cell -- exported as float32 safetensors with the metadata cell=seed, output_activation=log_softmax, vocab, labels.

The data, and the exact preprocessing rule (a C tokeniser or test must do the same to a word):
  * one class per language, from one Debian word list each: English /usr/share/dict/american-english (wamerican),
    German ngerman (wngerman), French french (wfrench), Italian italian (witalian), Spanish spanish (wspanish),
    Dutch dutch (wdutch). Lists are read as UTF-8, one word per line, surrounding whitespace stripped.
  * a word is Unicode-normalised to NFC (precomposed accents: 'é' is one code point U+00E9), then
      - dropped if any character is not a letter (str.isalpha): no apostrophes/possessives ("AA's"), hyphens,
        dots, digits, spaces;
      - dropped if it has more than one upper-case letter (acronyms such as "ACPI", "ACLs", "McDonald");
      - lower-cased with Python's str.lower() (German nouns and proper names are kept, lower-cased);
      - kept only if 3 to 20 characters long.
  * duplicates inside a list are merged; a word that is in more than one language's list after this is dropped
    from all of them (it cannot be labelled).
  * the vocabulary: the characters found in at least MIN_CHAR_WORDS (100) of the remaining words, all lists
    together, in code-point order (the first line printed): 48 characters,
        abcdefghijklmnopqrstuvwxyzßàáâäçèéêëìíîïñòóôöúûü
    Words that hold any rarer character (here 'å', 'ù') are dropped. The vocabulary is a list of single lower-case
    characters, and every word of the data and of the test fixture is made only of them. A word is tokenised one
    Unicode code point per step; a text with upper-case or unknown characters is NOT what the model was trained on
    (sqlite-rnn refuses a character outside the vocab with an error that names it).
  * held-out test set: TEST_PER_CLASS (300) words per language, drawn with a fixed seed before training and never
    used in training; the rest is the training pool. Training draws the same number of words from every language
    in each epoch (balanced classes: the lists' sizes differ by 7x), without replacement within an epoch.
  * the examples of sql/lang.sql (EXAMPLES below) are checked to be in none of the lists after preprocessing.

Outputs:
  * sql/lang_model.safetensors (about 95 KB): the state_dict in float32 plus the metadata.
  * tests/fixtures/lang_test.json: {"vocab", "labels", "preprocessing", "words": [{"word", "label" (true),
    "torch_label" (argmax), "logp" (6 log-probabilities, 9 significant digits)}, ...] for every held-out word,
    "examples" (the same for the words of sql/lang.sql, which are in no list), "accuracies": {"torch_accuracy", "per_label"}}.
    logp comes from a float32 forward of the tutorial cell on the weights read back from the exported blob
    (tests/st.py's reader), i.e. what sqlite-rnn sees, not from the in-memory model.
"""
import collections
import json
import os
import random
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import st  # noqa: E402  (tests/st.py: the project's safetensors writer/reader)

MODEL_PATH = os.path.join(HERE, "lang_model.safetensors")
FIXTURE_PATH = os.path.join(ROOT, "tests", "fixtures", "lang_test.json")
LANG_SQL = os.path.join(HERE, "lang.sql")

DICT_DIR = "/usr/share/dict"
LISTS = [  # (label, file under /usr/share/dict, Debian package)
    ("English", "american-english", "wamerican"),
    ("German", "ngerman", "wngerman"),
    ("French", "french", "wfrench"),
    ("Italian", "italian", "witalian"),
    ("Spanish", "spanish", "wspanish"),
    ("Dutch", "dutch", "wdutch"),
]
MIN_LEN, MAX_LEN = 3, 20
MIN_CHAR_WORDS = 100
TEST_PER_CLASS = 300
VAL_PER_CLASS = 300          # carved from the training pool, only to print progress
HIDDEN = 128
EPOCHS = 10
PER_CLASS_PER_EPOCH = 16000  # words drawn from each language per epoch
BATCH = 128
LR = 3e-3
SEED = 1234

# The example words of sql/lang.sql, with the language each comes from (keep the two in step: main() checks that
# lang.sql's VALUES list is exactly this). None of them is in the data (in no word list after preprocessing):
# surnames, dishes and words each language is known for.
EXAMPLES = [("schmidt", "German"), ("müller", "German"), ("schneider", "German"), ("weltschmerz", "German"),
            ("kindergarten", "German"), ("garcia", "Spanish"), ("fernández", "Spanish"), ("quesadilla", "Spanish"),
            ("ferrari", "Italian"), ("bianchi", "Italian"), ("gnocchi", "Italian"), ("croissant", "French"),
            ("château", "French"), ("soufflé", "French"), ("bonjour", "French"), ("smith", "English"),
            ("williams", "English"), ("downtown", "English"), ("vandenberg", "Dutch"), ("jansen", "Dutch")]

PREPROCESSING = ("NFC-normalise; drop words with any non-letter (str.isalpha) or more than one upper-case letter; "
                 "lower-case with str.lower(); keep 3..20 characters; drop words found in more than one language's "
                 "list; drop words with characters outside vocab; one token per Unicode code point")


# ---------------------------------------------------------------------------------------------------------
# Data

def clean(line):
    """The word kept from one line of a list, lower-cased, or None."""
    w = unicodedata.normalize("NFC", line.strip())
    if not w or not all(c.isalpha() for c in w):
        return None
    if sum(c.isupper() for c in w) > 1:
        return None
    w = w.lower()
    if not MIN_LEN <= len(w) <= MAX_LEN:
        return None
    return w


def load_words():
    """({label: sorted list of words}, vocab list)."""
    per_lang = {}
    for label, fname, pkg in LISTS:
        path = os.path.join(DICT_DIR, fname)
        if not os.path.exists(path):
            sys.exit("missing %s: apt-get install -y %s" % (path, pkg))
        with open(path, encoding="utf-8") as f:
            per_lang[label] = {w for w in map(clean, f) if w}
    seen = collections.Counter(w for words in per_lang.values() for w in words)
    per_lang = {label: {w for w in words if seen[w] == 1} for label, words in per_lang.items()}
    char_words = collections.Counter(c for words in per_lang.values() for w in words for c in set(w))
    vocab = sorted(c for c, n in char_words.items() if n >= MIN_CHAR_WORDS)
    vset = set(vocab)
    per_lang = {label: sorted(w for w in words if set(w) <= vset) for label, words in per_lang.items()}
    dropped = sorted(c for c, n in char_words.items() if n < MIN_CHAR_WORDS)
    return per_lang, vocab, dropped


def split(per_lang, rng):
    """test, val, train: {label: list of words}; test and val are TEST_PER_CLASS / VAL_PER_CLASS per label."""
    test, val, train = {}, {}, {}
    for label, words in per_lang.items():
        words = list(words)
        rng.shuffle(words)
        test[label] = sorted(words[:TEST_PER_CLASS])
        val[label] = words[TEST_PER_CLASS:TEST_PER_CLASS + VAL_PER_CLASS]
        train[label] = words[TEST_PER_CLASS + VAL_PER_CLASS:]
    return test, val, train


# ---------------------------------------------------------------------------------------------------------
# The model: the tutorial's RNN, unchanged.

def make_model(input_size, hidden_size, output_size):
    import torch.nn as nn
    import torch

    class RNN(nn.Module):
        def __init__(self, input_size, hidden_size, output_size):
            super().__init__()
            self.hidden_size = hidden_size
            self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
            self.i2o = nn.Linear(input_size + hidden_size, output_size)
            self.softmax = nn.LogSoftmax(dim=1)

        def forward(self, input, hidden):
            combined = torch.cat((input, hidden), 1)
            hidden = self.i2h(combined)
            output = self.i2o(combined)
            output = self.softmax(output)
            return output, hidden

        def initHidden(self, batch=1):
            return torch.zeros(batch, self.hidden_size)

    return RNN(input_size, hidden_size, output_size)


def run_words(model, onehots):
    """Log-probabilities after the last step, for a [T, B, I] batch of one-hot words of one length."""
    hidden = model.initHidden(onehots.shape[1])
    for t in range(onehots.shape[0]):
        output, hidden = model(onehots[t], hidden)
    return output


def encode(words, index):
    """[T, B, I] float32 one-hot tensor of words that all have length T."""
    import torch
    T = len(words[0])
    x = torch.zeros(T, len(words), len(index))
    for b, w in enumerate(words):
        for t, c in enumerate(w):
            x[t, b, index[c]] = 1.0
    return x


def batches(items, index, batch, rng):
    """Batches (onehots [T, B, I], targets [B]) of same-length words, shuffled; items: [(word, class)]."""
    import torch
    by_len = collections.defaultdict(list)
    for w, y in items:
        by_len[len(w)].append((w, y))
    out = []
    for group in by_len.values():
        rng.shuffle(group)
        for i in range(0, len(group), batch):
            out.append(group[i:i + batch])
    rng.shuffle(out)
    for chunk in out:
        yield encode([w for w, _ in chunk], index), torch.tensor([y for _, y in chunk])


def accuracy(model, sets, index):
    import torch
    items = [(w, y) for y, words in enumerate(sets.values()) for w in words]
    good = 0
    with torch.no_grad():
        for x, y in batches(items, index, 1024, random.Random(0)):
            good += int((run_words(model, x).argmax(1) == y).sum())
    return good / len(items)


def train(train_sets, val_sets, vocab, labels):
    import torch
    import torch.nn as nn
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = random.Random(SEED)
    index = {c: i for i, c in enumerate(vocab)}
    model = make_model(len(vocab), HIDDEN, len(labels))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    loss_fn = nn.NLLLoss()
    for epoch in range(EPOCHS):
        t0 = time.time()
        items = []
        for y, label in enumerate(labels):
            pool = train_sets[label]
            items += [(w, y) for w in rng.sample(pool, min(PER_CLASS_PER_EPOCH, len(pool)))]
        total, n = 0.0, 0
        model.train()
        for x, y in batches(items, index, BATCH, rng):
            opt.zero_grad()
            loss = loss_fn(run_words(model, x), y)
            loss.backward()
            # the tutorial's hidden state has no squashing: clip so a long word cannot blow a step up
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss) * len(y)
            n += len(y)
        sched.step()
        model.eval()
        print("epoch %2d  loss %.4f  val acc %.3f  (%.0f s)"
              % (epoch + 1, total / n, accuracy(model, val_sets, index), time.time() - t0), flush=True)
    return model


# ---------------------------------------------------------------------------------------------------------
# Export and the reference forward on the exported bytes

def blob_model(blob):
    """The tutorial forward on the float32 weights read back from a safetensors blob: word -> list of log-probs."""
    import torch
    tensors, meta = st.loads(blob)

    def t(name):
        dtype, shape, values = tensors[name]
        return torch.tensor(values, dtype=torch.float32).reshape(shape)

    w_ih, b_ih, w_io, b_io = t("i2h.weight"), t("i2h.bias"), t("i2o.weight"), t("i2o.bias")
    vocab = json.loads(meta["vocab"])
    index = {c: i for i, c in enumerate(vocab)}
    H = w_ih.shape[0]

    def forward(word):
        hidden = torch.zeros(1, H)
        output = None
        with torch.no_grad():
            for c in word:
                x = torch.zeros(1, len(vocab))
                x[0, index[c]] = 1.0
                combined = torch.cat((x, hidden), 1)
                hidden = combined @ w_ih.T + b_ih
                output = torch.log_softmax(combined @ w_io.T + b_io, dim=1)
        return [float(v) for v in output[0]]

    return forward, meta


def g9(v):
    return float("%.9g" % v)


def export(model, vocab, labels):
    """safetensors bytes of the trained model: its state_dict in float32 and the metadata sqlite-rnn reads."""
    metadata = {
        "cell": "seed",
        "output_activation": "log_softmax",
        "vocab": json.dumps(vocab),
        "labels": json.dumps(labels),
        "description": "Language of a lower-case word (English, German, French, Italian, Spanish, Dutch) from its "
                       "letters: the PyTorch tutorial's character RNN (i2h, i2o over cat(one-hot char, hidden)), "
                       "hidden %d, trained by sql/train_lang.py on the Debian word lists" % HIDDEN,
    }
    sd = model.state_dict()
    assert list(sd) == ["i2h.weight", "i2h.bias", "i2o.weight", "i2o.bias"], list(sd)
    return st.from_state_dict(sd, metadata, dtype="F32")


def dump_fixture(fixture):
    """The fixture as UTF-8 JSON text, one word per line (small, and diffs well)."""
    def dump(v):
        return json.dumps(v, ensure_ascii=False)
    parts = []
    for key, value in fixture.items():
        if key in ("words", "examples"):
            value = "[\n  " + ",\n  ".join(dump(r) for r in value) + "\n ]"
        else:
            value = dump(value)
        parts.append(" %s: %s" % (dump(key), value))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def check_lang_sql():
    """lang.sql's VALUES list must be EXAMPLES (warn only: lang.sql may be edited by hand)."""
    if not os.path.exists(LANG_SQL):
        print("WARNING: no sql/lang.sql")
        return
    import re
    with open(LANG_SQL, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"examples\(word, language\) AS \(VALUES(.*?)\n\)", text, re.S)
    found = [tuple(p) for p in re.findall(r"\('([^']*)',\s*'([^']*)'\)", m.group(1))] if m else []
    if found != EXAMPLES:
        print("WARNING: sql/lang.sql lists %r, not EXAMPLES %r" % (found, EXAMPLES))


def main():
    start = time.time()
    per_lang, vocab, dropped = load_words()
    labels = [label for label, _, _ in LISTS]
    print("vocab (%d): %s   dropped rare characters: %s" % (len(vocab), "".join(vocab), "".join(dropped)))
    test, val, train_sets = split(per_lang, random.Random(SEED))
    for label in labels:
        print("%-8s %7d words: train pool %7d, val %d, test %d"
              % (label, len(per_lang[label]), len(train_sets[label]), len(val[label]), len(test[label])))
    all_words = {w for words in per_lang.values() for w in words}
    for w, _ in EXAMPLES:
        assert set(w) <= set(vocab) and w not in all_words, w

    if "--no-train" in sys.argv[1:]:
        # only rebuild the fixture, from the model already in sql/lang_model.safetensors (same split: same seed)
        train_seconds = 0.0
    else:
        blob = export(train(train_sets, val, vocab, labels), vocab, labels)
        train_seconds = time.time() - start
        with open(MODEL_PATH, "wb") as f:
            f.write(blob)

    with open(MODEL_PATH, "rb") as f:
        blob = f.read()
    forward, meta = blob_model(blob)
    assert json.loads(meta["vocab"]) == vocab and json.loads(meta["labels"]) == labels

    def classify(word):
        logp = forward(word)
        return labels[max(range(len(labels)), key=lambda i: logp[i])], [g9(v) for v in logp]

    rows, per_label = [], {}
    for label in labels:
        for w in test[label]:
            pred, logp = classify(w)
            rows.append({"word": w, "label": label, "torch_label": pred, "logp": logp})
        per_label[label] = sum(r["torch_label"] == label for r in rows if r["label"] == label) / len(test[label])
    acc = sum(r["label"] == r["torch_label"] for r in rows) / len(rows)
    examples = []
    for w, label in EXAMPLES:
        pred, logp = classify(w)
        examples.append({"word": w, "label": label, "torch_label": pred, "logp": logp})
    fixture = {
        "description": "Held-out test words of sql/lang_model.safetensors (sql/train_lang.py), never used in "
                       "training, with the float32 torch forward on the weights read back from the exported "
                       "blob. label: the true language; torch_label: the label of the largest log-probability; "
                       "logp: the 6 log-probabilities, in the order of labels. examples: the words of sql/lang.sql.",
        "vocab": vocab,
        "labels": labels,
        "preprocessing": PREPROCESSING,
        "words": rows,
        "examples": examples,
        "accuracies": {"torch_accuracy": acc, "per_label": per_label},
    }
    os.makedirs(os.path.dirname(FIXTURE_PATH), exist_ok=True)
    with open(FIXTURE_PATH, "w", encoding="utf-8") as f:
        f.write(dump_fixture(fixture))

    print("test accuracy %.4f (%d words)  per language: %s"
          % (acc, len(rows), ", ".join("%s %.3f" % kv for kv in per_label.items())))
    print("examples (word: true -> model): " + ", ".join(
        "%s: %s -> %s" % (e["word"], e["label"], e["torch_label"]) for e in examples))
    print("model %s: %d bytes; fixture %s; training %.0f s, total %.0f s"
          % (os.path.relpath(MODEL_PATH, ROOT), len(blob), os.path.relpath(FIXTURE_PATH, ROOT), train_seconds,
             time.time() - start))
    check_lang_sql()


if __name__ == "__main__":
    main()
