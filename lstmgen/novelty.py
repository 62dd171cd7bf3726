"""How much of a sample is training text: a suffix array over a corpus's train records, answering "the longest
span of this text that occurs in a training record, and which record". Numpy only: `sample` never imports torch
to ask (only a lazy build for a corpus prepared before indexes existed reads corpus.pt with torch).

The index lives in the corpus's directory, `novelty/`:
  text.npy   (n,) the train records' characters as codes (uint8, or uint16/int32 for larger alphabets), each
             record preceded by 0 and the last followed by 0: T = 0 r0 0 r1 0 ... 0
  sa.npy     (n,) int32 (int64 past 2^31 characters): the suffix array of T, its suffixes' starts sorted
  starts.npy (R,) int64: where each record's first character is in T
  info.json  the alphabet (code i+1 = alphabet[i]), each train record's number among the corpus's records
             (records.npy), and the corpus it was built from (sha256, train tokens), to refuse a stale index
  keys.npy   (n,) uint64: each suffix's first KEY_CHARS codes packed (alphabets under 255 characters)
On disk: 13 bytes per character (1 + 4 + 8) plus 16 per record. A lookup memory-maps the arrays and reads about
2 x log2(n) windows of WINDOW characters per character of the sample, in numpy steps over all of its
positions at once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import registry
from .errors import LstmgenError, UsageError

INDEX_DIR = "novelty"
INDEX_FORMAT = 2  # 2: with prefix.npy
# The build sorts suffixes by prefix doubling in numpy. At its peak (the first rounds, when every suffix is
# still tied with another: the text, sa and ranks as int32, an int64 key and argsort order per tied suffix) it
# held 47.5 bytes per character on tinyshakespeare (benchmarks/novelty.py): ~4.8 GB for 100 M characters.
# Train splits longer than this get no index (`--novel` says so), rather than a build that may exhaust memory.
MAX_INDEX_CHARS = 128 << 20
WINDOW = 32  # characters compared per step of a lookup: most spans a sample shares with its corpus are shorter
# Each suffix's first KEY_CHARS codes packed into a uint64 (keys.npy, for alphabets under 255 characters): one
# np.searchsorted then settles every sample position whose longest match is shorter, most of them, and
# narrows the others' searches to the few suffixes sharing that much (a 24-character sample: 1.84 -> 0.4 ms).
KEY_CHARS = 8
QUERY_BLOCK = 4096  # sample positions looked up together: (QUERY_BLOCK, WINDOW) int64 windows, 1 MB


class NoIndex(LstmgenError):
    """The training records a novelty check needs are not there (corpus removed, re-prepared, or too large)."""


@dataclass
class Copy:
    """The longest span of a text that occurs in a training record."""

    chars: int  # its length in characters (0: no character of the text occurs in training)
    record: int | None  # the record it occurs in: its number among the corpus's records (0-based, input order)
    at: int  # where the span starts in the text
    copied: bool  # the text is a whole training record, exactly

    def to_json(self) -> dict:
        return {"chars": self.chars, "record": self.record, "at": self.at}


@dataclass
class Index:
    text: np.ndarray  # (n,) codes, 0 between records
    sa: np.ndarray  # (n,) suffix array of text
    starts: np.ndarray  # (R,) int64: each record's first character in text
    records: np.ndarray  # (R,) int64: each train record's number among the corpus's records
    alphabet: str  # code i + 1 is alphabet[i]
    source: dict  # {"sha256", "train_tokens"} of the corpus it was built from
    prefix: np.ndarray | None = None  # (B**k + 1,) int64: where suffixes beginning with each k codes start in sa
    keys: np.ndarray | None = None  # (n,) uint64: packed_keys, for alphabets of at most 254 characters

    def __post_init__(self):
        self._codes = {ch: i + 1 for i, ch in enumerate(self.alphabet)}
        self._absent = len(self.alphabet) + 1  # a character training never had: matches nothing
        if self.prefix is None:
            self.prefix = prefix_table(self.text, self.sa, len(self.alphabet))
        if self.keys is None and self._absent < 256:
            self.keys = packed_keys(self.text, self.sa)

    def _ranges(self, q: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each search may start, [lo, hi) of sa: the suffixes sharing q[at:]'s first k codes (they hold
        its longest match if any suffix shares those k), else all of sa. Saves log2(B**k) steps of each search."""
        n, base = self.text.size, len(self.alphabet) + 1
        k = _prefix_len(base)
        lo, hi = np.zeros(at.size, np.int64), np.full(at.size, n, np.int64)
        if k == 0 or q.size < k:
            return lo, hi
        heads = np.lib.stride_tricks.sliding_window_view(q, k)  # (m - k + 1, k)
        usable = at <= q.size - k
        rows = heads[at[usable]]
        ok = (rows < base).all(1)
        key = (rows * base ** np.arange(k - 1, -1, -1)).sum(1)
        key = np.where(ok, key, 0)
        a, b = self.prefix[key], self.prefix[key + 1]
        narrow = ok & (a < b)
        idx = np.flatnonzero(usable)[narrow]
        lo[idx], hi[idx] = a[narrow], b[narrow]
        return lo, hi

    def encode(self, text: str) -> np.ndarray:
        """(len(text),) int64 codes; characters absent from training get a code found nowhere in the index."""
        codes, absent = self._codes, self._absent
        return np.fromiter((codes.get(ch, absent) for ch in text), dtype=np.int64, count=len(text))

    def longest(self, text: str) -> Copy:
        """The longest span of `text` that occurs in a training record (the first such span when several tie)."""
        q = self.encode(text)
        if q.size == 0 or self.text.size == 0:
            return Copy(0, None, 0, False)
        best_len, best_at, best_pos = 0, 0, 0
        for first in range(0, q.size, QUERY_BLOCK):
            at = np.arange(first, min(q.size, first + QUERY_BLOCK))
            if self.keys is not None:
                lengths, pos = self._by_keys(q, at)
            else:
                lengths, pos = _matching(self.text, self.sa, q, at, *self._ranges(q, at))
            i = int(np.argmax(lengths))
            if lengths[i] > best_len:
                best_len, best_at, best_pos = int(lengths[i]), first + i, int(pos[i])
        if best_len == 0:
            return Copy(0, None, 0, False)
        k = int(np.searchsorted(self.starts, best_pos, side="right")) - 1  # the record holding that occurrence
        return Copy(best_len, int(self.records[k]), best_at, best_len == q.size and self._whole(q))

    def _by_keys(self, q: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """_matching's answer for each start in `at`, through the packed keys. The suffixes sharing q[start:]'s
        first L = min(KEY_CHARS, rest) codes are one range [lo, hi) of sa: with none, the longest match is
        shorter than L and shared with a neighbour of that place (sa is sorted), read from their keys; when
        the query ends within them, it is L; else the window search continues inside the range."""
        keys, sa = self.keys, self.sa
        low, high = _query_keys(q, at, 0), _query_keys(q, at, 255)  # the query's codes, then all 0s / all 255s
        lo, hi = np.searchsorted(keys, low, "left"), np.searchsorted(keys, high, "right")
        rest = np.minimum(q.size - at, KEY_CHARS)
        length, where = np.zeros(at.size, np.int64), np.zeros(at.size, np.int64)
        found = lo < hi
        ended = found & (rest < KEY_CHARS)  # the whole rest of the query occurs
        length[ended], where[ended] = rest[ended], sa[lo[ended]]
        deeper = found & ~ended
        if deeper.any():
            length[deeper], where[deeper] = _matching(self.text, sa, q, at[deeper], lo[deeper], hi[deeper])
        short = np.flatnonzero(~found)
        if short.size:
            n = keys.size
            sides = np.stack([np.maximum(lo[short] - 1, 0), np.minimum(lo[short], n - 1)], 1)  # (k, 2) in sa
            query_bytes = _bytes(low[short])[:, None, :]  # (k, 1, KEY_CHARS)
            shared = (_bytes(keys[sides].ravel()).reshape(-1, 2, KEY_CHARS) == query_bytes).argmin(2)  # (k, 2)
            side = shared.argmax(1)  # a difference lies within L, so argmin finds the first one
            length[short] = shared[np.arange(short.size), side]
            where[short] = sa[sides[np.arange(short.size), side]]
        return length, where

    def _whole(self, q: np.ndarray) -> bool:
        """Whether 0 q 0 occurs in T: the text is exactly one training record."""
        framed = np.concatenate([[0], q, [0]])
        lengths, _ = _matching(self.text, self.sa, framed, np.array([0]), *self._ranges(framed, np.array([0])))
        return int(lengths[0]) == framed.size


def _matching(
    t: np.ndarray, sa: np.ndarray, q: np.ndarray, at: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each start in `at`: the length of the longest prefix of q[start:] found in t, and one place in t
    where it occurs ((k,) int64 each). [lo, hi): where in sa each search starts (Index._ranges).

    All starts are searched at once, WINDOW characters at a time. Each keeps the range [lo, hi) of suffixes
    that share its first `d` characters; a binary search over that range on the next window finds where its
    query would sit. When a suffix there shares the whole window, the range narrows to those suffixes and d
    grows by WINDOW; otherwise the longest match is with one of the two suffixes beside that place.
    """
    m, k = q.size, at.size
    lo, hi, d = lo.copy(), hi.copy(), np.zeros(k, np.int64)
    length, where = np.zeros(k, np.int64), np.zeros(k, np.int64)
    live = np.arange(k)
    steps = np.arange(WINDOW)
    while live.size:
        start, dl = at[live] + d[live], d[live]
        qpos = start[:, None] + steps  # (k, W) query positions
        qwin = np.where(qpos < m, q[np.minimum(qpos, m - 1)], -2)  # -2: past the query's end
        valid = qpos < m  # compare only the query's own characters

        # lower bound: the first suffix in [lo, hi) whose window is not below the query's
        a, b = lo[live].copy(), hi[live].copy()
        while (open_ := a < b).any():
            mid = (a + b) // 2
            less, _ = _compare(_window(t, sa, mid, dl), qwin, valid)
            a = np.where(open_ & less, mid + 1, a)
            b = np.where(open_ & ~less, mid, b)
        lb = a
        # The two neighbours of that place inside the range (each shares d characters with the query).
        cand = np.stack([np.maximum(lb - 1, lo[live]), np.minimum(lb, hi[live] - 1)], 1)  # (k, 2)
        eq = np.stack([_compare(_window(t, sa, cand[:, j], dl), qwin, valid)[1] for j in range(2)], 1)
        pick = eq.argmax(1)
        got = eq[np.arange(live.size), pick]
        full = valid.sum(1)
        done = got < full  # a mismatch within this window (or the query ended inside it)
        ended = (got == full) & (start + full >= m)  # the whole rest of the query occurs
        final = done | ended
        length[live[final]] = dl[final] + got[final]
        where[live[final]] = sa[cand[final, pick[final]]]
        # Queries whose whole window occurs: narrow to the suffixes sharing it (upper bound), then the next window.
        go = ~final
        if not go.any():
            break
        g = live[go]
        a, b = lb[go], hi[g].copy()
        qwin, valid = qwin[go], valid[go]
        dg = d[g]
        while (open_ := a < b).any():
            mid = (a + b) // 2
            _, eqn = _compare(_window(t, sa, mid, dg), qwin, valid)
            same = eqn == WINDOW
            a = np.where(open_ & same, mid + 1, a)
            b = np.where(open_ & ~same, mid, b)
        lo[g], hi[g], d[g] = lb[go], a, dg + WINDOW
        live = g
    return length, where


def _window(t: np.ndarray, sa: np.ndarray, rows: np.ndarray, off: np.ndarray) -> np.ndarray:
    """(k, WINDOW) int64: WINDOW characters of suffix sa[rows[i]] from its off[i]-th; -1 past the text's end
    (before every code, as a shorter suffix sorts first)."""
    n = t.size
    p = sa[np.minimum(rows, n - 1)].astype(np.int64)[:, None] + off[:, None] + np.arange(WINDOW)
    return np.where(p < n, t[np.minimum(p, n - 1)].astype(np.int64), -1)


def _compare(win: np.ndarray, qwin: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Suffix windows against query windows ((k, WINDOW) each; `valid` masks the query's own characters, a
    prefix of each row): (whether the suffix's is below the query's, the number of equal leading characters)."""
    diff = (win != qwin) & valid
    nvalid = valid.sum(1)
    first = np.where(diff.any(1), diff.argmax(1), nvalid)
    row, col = np.arange(win.shape[0]), np.minimum(first, WINDOW - 1)
    return (first < nvalid) & (win[row, col] < qwin[row, col]), first


PREFIX_ENTRIES = 1 << 20  # the prefix table's size at most: 8 MB, built in one pass over sa


def packed_keys(t: np.ndarray, sa: np.ndarray) -> np.ndarray:
    """(n,) uint64: each suffix's (in sa's order) first KEY_CHARS codes, big-endian, 0 past the text's end.
    Non-decreasing, as sa is sorted, so np.searchsorted finds the suffixes sharing a prefix. Codes < 256."""
    n = t.size
    keys = np.zeros(n, np.uint64)
    for j in range(KEY_CHARS):
        p = sa.astype(np.int64) + j
        code = np.where(p < n, t[np.minimum(p, n - 1)], 0).astype(np.uint64)
        keys |= code << np.uint64(8 * (KEY_CHARS - 1 - j))
    return keys


def _query_keys(q: np.ndarray, at: np.ndarray, fill: int) -> np.ndarray:
    """(k,) uint64: q[start:start + KEY_CHARS] for each start in `at` packed as packed_keys does, the places
    past the query's end set to `fill`."""
    pos = at[:, None] + np.arange(KEY_CHARS)
    codes = np.where(pos < q.size, q[np.minimum(pos, q.size - 1)], fill).astype(np.uint64)
    return (codes << (np.uint64(8) * np.arange(KEY_CHARS - 1, -1, -1, dtype=np.uint64))).sum(1, dtype=np.uint64)


def _bytes(keys: np.ndarray) -> np.ndarray:
    """(k, KEY_CHARS) uint8: the codes packed in each key, first code first."""
    return keys.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - KEY_CHARS :]


def _prefix_len(base: int) -> int:
    """k: the most codes a prefix table of at most PREFIX_ENTRIES entries keys on (3 for a 65-char alphabet)."""
    k = 0
    while base ** (k + 1) <= PREFIX_ENTRIES:
        k += 1
    return k


def prefix_table(t: np.ndarray, sa: np.ndarray, n_alphabet: int) -> np.ndarray:
    """(B**k + 1,) int64, B = n_alphabet + 1: entry key is the first place in sa whose suffix's first k codes,
    read as a base-B number (past the text's end: 0), are key or more. Non-decreasing along sa, as sa is sorted."""
    base, n = n_alphabet + 1, t.size
    k = _prefix_len(base)
    key = np.zeros(n, np.int64)
    for j in range(k):
        p = sa.astype(np.int64) + j
        key = key * base + np.where(p < n, t[np.minimum(p, n - 1)].astype(np.int64), 0)
    return np.searchsorted(key, np.arange(base**k + 1), side="left").astype(np.int64)


# -- building -------------------------------------------------------------------------------------------


def suffix_array(t: np.ndarray) -> np.ndarray:
    """The suffix array of `t` ((n,) small non-negative ints): its suffixes' starts in lexicographic order,
    a suffix before any longer one it begins. Prefix doubling: suffixes sorted by their first h codes, then
    each group still tied re-sorted by (its rank, the rank h further on), h doubling; only tied suffixes
    take part in a round, so text without long repeats is done after a few."""
    n = t.size
    idx = np.int32 if n < 2**31 - 1 else np.int64
    sa = np.argsort(t, kind="stable").astype(idx)  # a radix sort for 8- and 16-bit codes
    key = t[sa]
    start = np.ones(n, dtype=bool)  # whether sa[p] begins a group of suffixes tied so far
    np.not_equal(key[1:], key[:-1], out=start[1:])
    del key
    rank = np.empty(n, idx)  # rank[i]: the position in sa where suffix i's group begins
    rank[sa] = np.maximum.accumulate(np.where(start, np.arange(n, dtype=idx), 0))
    h = 1
    while True:
        single = start.copy()  # a group of one: it begins here and the next position begins another
        single[:-1] &= start[1:]
        pos = np.flatnonzero(~single).astype(idx)
        del single
        if pos.size == 0:
            return sa
        s = sa[pos]
        ahead = s.astype(np.int64) + h
        r2 = np.full(s.size, -1, np.int64)  # past the end: before any rank
        inside = ahead < n
        r2[inside] = rank[ahead[inside]]
        del ahead, inside
        keys = rank[s].astype(np.int64) * (n + 1) + (r2 + 1)
        del r2
        order = np.argsort(keys)
        keys = keys[order]
        sa[pos] = s[order]
        del s, order
        begins = np.ones(pos.size, dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=begins[1:])
        del keys
        start[pos] = begins
        rank[sa[pos]] = np.maximum.accumulate(np.where(begins, pos, 0))
        del pos, begins
        h *= 2


def train_texts(corpus: dict) -> Iterator[str]:
    """The train split's records as text, as a sample of its model reads (word and BPE ids decoded)."""
    from .tokenize import Vocab

    vocab = Vocab.from_dict(corpus["vocab"])
    ids = corpus["splits"]["train"].numpy()
    ends = np.flatnonzero(ids == vocab.eor_id)
    first = 0
    for end in [*ends.tolist(), ids.size]:
        if end > first or end < ids.size:
            # a labelled record's first id is its label's token: not text a sample could copy
            yield vocab.detokenize(vocab.itos[i] for i in ids[first:end].tolist() if i < vocab.n_text)
        first = end + 1


def build_index(corpus: dict) -> Index:
    """The novelty index of a corpus payload ({"vocab", "splits", "meta"}, as load_corpus gives)."""
    from .tokenize import Vocab

    meta = corpus["meta"]
    chars = int((meta.get("chars") or {}).get("train") or 0)
    if chars > MAX_INDEX_CHARS:
        raise NoIndex(
            f"the train split of corpus {meta.get('source')!r} has {chars:,} characters, over the novelty index's "
            f"limit of {MAX_INDEX_CHARS:,} (lstmgen.novelty.MAX_INDEX_CHARS: its build holds ~48 bytes per character)"
        )
    vocab = Vocab.from_dict(corpus["vocab"])
    ids = corpus["splits"]["train"].numpy()
    if vocab.kind == "char" and vocab.eor_id == 0 and not vocab.labels:
        # The ids are the codes already: <eor> (0) ends each record; put one before the first.
        body = ids if ids.size and ids[-1] == 0 else np.concatenate([ids, np.zeros(1, ids.dtype)])
        text = np.concatenate([np.zeros(1, body.dtype), body])
        alphabet = "".join(vocab.itos[1:])
        if any(len(ch) != 1 for ch in alphabet):
            raise LstmgenError("a char vocabulary holds a token longer than one character; prepare the corpus again")
    else:
        from .tokenize import code_points

        records = list(train_texts(corpus))
        joined = "\0" + "\0".join(records) + "\0"
        points = code_points(joined).astype(np.int64)
        distinct, codes = np.unique(points, return_inverse=True)  # "\0" (0) first, when records hold none
        if distinct[0] != 0:
            raise LstmgenError("internal error: the record separator is missing from the novelty text")
        alphabet = "".join(map(chr, distinct[1:].tolist()))
        dtype = np.uint8 if distinct.size <= 256 else np.uint16 if distinct.size <= 65536 else np.int32
        text = codes.astype(dtype)
    sep = np.flatnonzero(text == 0)
    starts = (sep[:-1] + 1).astype(np.int64)
    return Index(text, suffix_array(text), starts, _record_numbers(meta, starts.size), alphabet,
                 {"sha256": meta.get("sha256"), "train_tokens": (meta.get("tokens") or {}).get("train")})  # fmt: skip


def _record_numbers(meta: dict, n_train: int) -> np.ndarray:
    """Each train record's number among the corpus's records, in input order: the split is a seeded shuffle
    (corpus.split_labels), made again here. A stream corpus's train split is one piece: record 0."""
    from .corpus import TRAIN, split_labels

    counts = meta.get("records") or {}
    if not meta.get("stream") and counts:
        labels = split_labels(sum(counts.values()), meta["val_frac"], meta["test_frac"], meta["seed"])
        numbers = np.flatnonzero(labels == TRAIN)
        if numbers.size == n_train:
            return numbers.astype(np.int64)
    return np.arange(n_train, dtype=np.int64)


def save_index(corpus_dir: Path, index: Index) -> None:
    """Write the index into corpus_dir/novelty whole (a staged directory renamed into place)."""
    staged = corpus_dir / f".{INDEX_DIR}-{secrets.token_hex(4)}"
    final = corpus_dir / INDEX_DIR
    try:
        staged.mkdir()
        for name in ("text", "sa", "starts", "records", "prefix", "keys"):
            if getattr(index, name) is not None:
                np.save(staged / f"{name}.npy", getattr(index, name))
        info = {"format": INDEX_FORMAT, "alphabet": index.alphabet, **index.source}
        (staged / "info.json").write_text(json.dumps(info))
        if final.exists():
            shutil.rmtree(final)
        os.rename(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def load_index(corpus_dir: Path) -> Index | None:
    """The index saved in corpus_dir, memory-mapped; None when there is none (or an unreadable one)."""
    d = corpus_dir / INDEX_DIR
    try:
        info = json.loads((d / "info.json").read_text())
        if info.get("format") != INDEX_FORMAT:
            return None
        # Plain ndarray views of the mapped files: np.memmap's own indexing cost a third of a lookup.
        arrays = {n: np.load(d / f"{n}.npy", mmap_mode="r").view(np.ndarray) for n in ("text", "sa", "starts",
                  "records", "prefix")}  # fmt: skip
        if (d / "keys.npy").exists():  # an index saved before keys existed makes them when loaded
            arrays["keys"] = np.load(d / "keys.npy", mmap_mode="r").view(np.ndarray)
    except (OSError, ValueError):
        return None
    return Index(**arrays, alphabet=info["alphabet"],
                 source={"sha256": info.get("sha256"), "train_tokens": info.get("train_tokens")})  # fmt: skip


def index_for(model: str, corpus: dict, on_note: Callable[[str], None] | None = None, build: bool = True) -> Index:
    """The novelty index of the corpus model `model` trained on (`corpus`: the checkpoint's summary of it).

    With `build`, built and saved once for a corpus prepared before indexes existed (that reads corpus.pt
    with torch, and holds ~48 bytes per train character while it runs: only --novel asks for it); NoIndex
    when the records are gone (the corpus removed, prepared again from other text, or too large), or when
    the index is not built and `build` is off."""
    name = corpus.get("name")
    again = f"prepare it again from {corpus['source']}" if corpus.get("source") else "prepare it again"
    if not name:
        raise NoIndex(f"model {model!r} does not name the corpus it trained on, so its training records cannot be "
                      "checked; train it again to check its samples")  # fmt: skip
    d = registry.entry_dir("corpus", name)
    if not (d / "corpus.pt").is_file():
        raise NoIndex(
            f"the training records of model {model!r} are gone: corpus {name!r} is no longer in {registry.home()}; "
            f"{again} (as --name {name}) to check its samples"
        )
    index = load_index(d)
    if index is None and not build:
        raise NoIndex(f"corpus {name!r} was prepared before lstmgen indexed training records; `lstmgen sample "
                      "--novel` builds its index once")  # fmt: skip
    if index is None:
        index = _build_lazily(name, d, on_note)
    want = {"sha256": corpus.get("sha256"), "train_tokens": (corpus.get("tokens") or {}).get("train")}
    if index.source != want:
        raise NoIndex(
            f"the training records of model {model!r} are gone: corpus {name!r} was prepared again from other "
            f"text after the model trained on it; {again} as before to check its samples"
        )
    return index


def _build_lazily(name: str, d: Path, on_note: Callable[[str], None] | None) -> Index:
    from .corpora import load_corpus

    with registry.lock("corpus", name, "building its novelty index"):
        index = load_index(d)  # another process may have built it while this one waited
        if index is not None:
            return index
        if on_note:
            on_note(f"building the novelty index of corpus {name!r} (once; `prepare` builds it for new corpora)")
        index = build_index(load_corpus(name))
        try:
            save_index(d, index)
        except OSError:  # a read-only registry: this run uses it from memory
            pass
    return index


# -- checking samples -----------------------------------------------------------------------------------

# --novel's default: redraw a sample that shares more than this many characters with a training record. Held-out
# text shares shorter spans with its training split by chance (common phrases, names, stock lines):
# benchmarks/novelty.py measures the longest span each held-out record of tinyshakespeare and of
# reddit-cleanjokes shares with training, and this is above the 99th percentile of both (BENCHMARKS.md).
MAX_COPY = 60
MAX_REDRAWS = 5  # --novel's default number of redraws per sample
LIMIT_REDRAWS = 100  # the most --max-redraws accepts: each redraw costs a whole sample's decoding


@dataclass
class Judged:
    sample: object  # sample.Sample (the one kept: the last draw)
    copy: Copy | None  # None when the training records could not be read (see Checker.missing)
    redrawn: int  # times it was drawn again because it copied more than max_copy characters


class Checker:
    """Samples -> Judged: each with its longest span of training text, and with `max_copy` set (--novel),
    drawn again, up to max_redraws times, while that span is longer than max_copy characters.

    A redraw of the j-th sample of a prompt drawn with seed S uses seed redraw_seed(S, j, try): the same
    command with the same --seed prints the same samples. The counts for a summary are kept in `redrawn`
    (samples drawn again), `draws` (redraws in all) and `still` (samples that copied after every try)."""

    def __init__(self, loaded, options, max_copy: int | None = None, max_redraws: int = MAX_REDRAWS,
                 on_note: Callable[[str], None] | None = None):  # fmt: skip
        from dataclasses import replace

        if max_copy is not None and max_copy < 0:
            raise UsageError(f"--max-copy must be 0 or more characters (got {max_copy})")
        if not 0 <= max_redraws <= LIMIT_REDRAWS:
            raise UsageError(f"--max-redraws must be between 0 and {LIMIT_REDRAWS} (got {max_redraws})")
        self.loaded, self.max_copy, self.max_redraws = loaded, max_copy, max_redraws
        self.one = replace(options, num_samples=1)
        self.missing: str | None = None  # why novelty is unknown (without --novel: reported, not refused)
        try:
            self.index: Index | None = index_for(loaded.name, loaded.corpus, on_note, build=max_copy is not None)
        except NoIndex as e:
            if max_copy is not None:
                raise
            self.index, self.missing = None, str(e)
        self.redrawn = self.draws = self.still = 0

    def check(self, samples) -> Iterator[Judged]:
        from .sample import sample as draw

        seen: dict[tuple, int] = {}  # (prompt, seed, label) -> samples of it so far: j
        for s in samples:
            j = seen.get((s.prompt, s.seed, s.label), 0)
            seen[(s.prompt, s.seed, s.label)] = j + 1
            if self.index is None:
                yield Judged(s, None, 0)
                continue
            copy, tries, seed = self.index.longest(s.text), 0, s.seed
            while self.max_copy is not None and copy.chars > self.max_copy and tries < self.max_redraws:
                tries += 1
                s = draw(self.loaded, s.prompt, self.one, seed=redraw_seed(seed, j, tries), label=s.label)[0]
                copy = self.index.longest(s.text)
            if tries:
                self.redrawn, self.draws = self.redrawn + 1, self.draws + tries
            if self.max_copy is not None and copy.chars > self.max_copy:
                self.still += 1
            yield Judged(s, copy, tries)

    def summary(self, samples: int) -> str:
        """One line for stderr after --novel: how many samples were drawn again."""
        line = (f"redrew {self.redrawn} of {samples} sample(s) that copied more than {self.max_copy} characters of "
                f"the training text ({self.draws} redraw(s))")  # fmt: skip
        if self.still:
            line += (f"; {self.still} still did after {self.max_redraws} tries: raise --max-redraws or "
                     "--temperature, or allow longer copies with --max-copy")  # fmt: skip
        return line


def redraw_seed(seed: int, j: int, tries: int) -> int:
    """The seed of a sample's tries-th redraw, distinct from every prompt's own seed (seed + i) in practice:
    a hash of (seed, j, tries), 63 bits."""
    state = np.random.SeedSequence([seed, j, tries, 0x6E6F76]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) % 2**63
