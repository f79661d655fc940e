"""Exact and near-duplicate detection of prompts.

Exact: a 64-bit hash of the normalised text (NFKC, casefolded, punctuation and spacing ignored).
Near: MinHash signatures of word shingles with datasketch's permutations ("affine32" scheme), computed
for whole batches with numpy, and an LSH band index holding the prompts kept so far. Candidates an
LSH bucket returns are confirmed by their estimated Jaccard similarity, so a band-hash collision
never drops a prompt.

Both indexes are used through batches: `batch(...)` prepares a list of prompts, then, in order,
`is_duplicate(i)` compares prompt i with every prompt kept so far (earlier ones of the batch included)
and `keep(i)` adds it. Decisions thus depend only on the order of the prompts, not on how they are batched.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Sequence
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH

from vipo_build.prompts.filter_config import NearDuplicateConfig

_NON_WORD = re.compile(r"[^\w\s]")
# The same mapping for ASCII text, where NFKC and casefolding change nothing but case: translate is far faster.
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if _NON_WORD.match(chr(c))})


def normalise(text: str) -> str:
    """Text as compared for duplicates and blocklists: NFKC, casefolded, punctuation as spaces, single spaces."""
    if text.isascii():
        folded = text.lower().translate(_ASCII_NON_WORD)
    else:
        # NFKC again after casefolding: casefolding can produce unnormalised sequences.
        folded = _NON_WORD.sub(" ", unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()))
    return " ".join(folded.split())


def stable_hash64(text: str) -> int:
    """A hash that is the same in every process (Python's own `hash` of str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class ExactDeduplicator:
    """Hashes of the normalised texts of kept prompts (64 bits: collisions are negligible below billions)."""

    def __init__(self) -> None:
        self.kept: set[int] = set()

    def batch(self, normalised: Sequence[str]) -> ExactBatch:
        return ExactBatch(self, [stable_hash64(text) for text in normalised])


class ExactBatch:
    def __init__(self, index: ExactDeduplicator, keys: list[int]):
        self.index, self.keys = index, keys

    def is_duplicate(self, i: int) -> bool:
        return self.keys[i] in self.index.kept

    def keep(self, i: int) -> None:
        self.index.kept.add(self.keys[i])


# Shingles ----------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio; odd, so multiplying by it is a bijection
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Shingles per signature chunk: its (permutations x shingles) buffer, reused chunk after chunk, is 16 MiB
# at 128 permutations, so it stays in cache and is not faulted in afresh each time.
_CHUNK_SHINGLES = 1 << 15


def word_hashes(normalised: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words of each text, flat, and each text's offsets into them (len(texts) + 1).

    Texts are split and their distinct words found by Arrow, so only distinct words are hashed in Python.
    """
    words = pc.split_pattern(pa.array(normalised, pa.large_string()), " ")
    offsets = words.offsets.to_numpy().astype(np.int64)
    encoded = pc.dictionary_encode(words.flatten())
    vocabulary = np.fromiter((stable_hash64(w) for w in encoded.dictionary.to_pylist()), np.uint64, len(encoded.dictionary))
    return vocabulary[encoded.indices.to_numpy()], offsets


def shingle_hashes(normalised: Sequence[str], shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word shingles of each text, flat, and each text's offsets into them.

    A text of n words has max(n - shingle_words + 1, 1) shingles: shorter texts are one shingle.
    """
    words, word_offsets = word_hashes(normalised)
    lengths = np.diff(word_offsets)
    counts = np.maximum(lengths - shingle_words + 1, 1)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    text_of = np.repeat(np.arange(len(counts)), counts)
    starts = word_offsets[text_of] + (np.arange(offsets[-1]) - offsets[text_of])
    ends = word_offsets[text_of + 1]
    combined = words[starts]
    for k in range(1, shingle_words):
        inside = starts + k < ends
        following = words[np.minimum(starts + k, len(words) - 1)]
        combined = np.where(inside, combined * _GOLDEN + following, combined)
    folded = (combined ^ (combined >> np.uint64(32))).astype(np.uint32)
    return folded, offsets


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer, which datasketch's affine schemes apply before permuting."""
    s1, m1, s2, m2, s3 = _FMIX32
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


def minhash_signatures(hashes: np.ndarray, offsets: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """MinHash signatures (texts x permutations, uint32) of the flat shingle hashes; row i equals the
    hashvalues of datasketch's `MinHash(scheme="affine32")` updated with text i's shingle hashes."""
    a, b = permutations[0][:, None], permutations[1][:, None]
    texts = len(offsets) - 1
    signatures = np.empty((texts, len(a)), np.uint32)
    # Permutations x shingles: the per-text minimum is then a reduction along contiguous rows.
    buffer = np.empty((len(a), min(_CHUNK_SHINGLES, int(offsets[-1]))), np.uint32)
    first = 0
    while first < texts:
        # Whole texts per chunk; a text longer than a chunk gets a chunk of its own.
        last = max(int(np.searchsorted(offsets, offsets[first] + _CHUNK_SHINGLES, "right")) - 1, first + 1)
        chunk = _fmix32(hashes[offsets[first] : offsets[last]])
        permuted = buffer[:, : len(chunk)] if len(chunk) <= buffer.shape[1] else np.empty((len(a), len(chunk)), np.uint32)
        np.multiply(a, chunk, out=permuted)
        permuted += b
        signatures[first:last] = np.minimum.reduceat(permuted, offsets[first:last] - offsets[first], axis=1).T
        first = last
    return signatures


# Near duplicates -------------------------------------------------------------------------

_FNV_PRIME = np.uint64(0x100000001B3)


class RowStore:
    """Equal-length rows appended one at a time into fixed blocks: no reallocation copies as the store grows."""

    BLOCK_ROWS = 1 << 14

    def __init__(self, dtype: type):
        self.dtype = dtype
        self.blocks: list[np.ndarray] = []
        self.rows = 0

    def append(self, row: np.ndarray) -> int:
        block, offset = divmod(self.rows, self.BLOCK_ROWS)
        if block == len(self.blocks):
            self.blocks.append(np.empty((self.BLOCK_ROWS, len(row)), self.dtype))
        self.blocks[block][offset] = row
        self.rows += 1
        return self.rows - 1

    def take(self, rows: Sequence[int]) -> np.ndarray:
        return np.stack([self.blocks[r // self.BLOCK_ROWS][r % self.BLOCK_ROWS] for r in rows])

    def filled_blocks(self) -> list[np.ndarray]:
        """The stored rows as arrays, block by block."""
        full, rest = divmod(self.rows, self.BLOCK_ROWS)
        return self.blocks[:full] + ([self.blocks[full][:rest]] if rest else [])


class SortedBuckets:
    """(band key, row) entries sorted by key, 12 bytes an entry (a dict entry takes ~100)."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)
        self.rows = np.empty(0, np.uint32)

    def __len__(self) -> int:
        return len(self.keys)

    def insert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(self.keys, keys[order])
        self.keys = np.insert(self.keys, at, keys[order])
        self.rows = np.insert(self.rows, at, rows[order])

    def matches(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(position in `wanted`, rows stored under that key) for each wanted key that is stored."""
        if not len(self.keys):
            return
        order = np.argsort(wanted)  # sorted queries search several times faster (cache locality)
        first = np.empty(len(wanted), np.int64)
        first[order] = np.searchsorted(self.keys, wanted[order])
        found = np.flatnonzero(self.keys[np.minimum(first, len(self.keys) - 1)] == wanted)
        last = np.searchsorted(self.keys, wanted[found], "right")
        for position, start, end in zip(found.tolist(), first[found].tolist(), last.tolist()):
            yield position, self.rows[start:end]


class BandBuckets:
    """Kept rows by LSH band key. Band keys carry their band (each band's hash starts from its own
    seed), so one table serves all bands.

    Rows kept recently are in a dict, looked up one prompt at a time. Between batches they move, once
    there are `stage_at` of them, to a small sorted tier, which moves into the large sorted tier past
    `merge_at` rows: sorted tiers take little memory and are searched for a whole batch at once, and
    the large one is rewritten only every `merge_at` rows.
    """

    def __init__(self, stage_at: int = 1 << 12, merge_at: int = 1 << 16):
        self.stage_at, self.merge_at = stage_at, merge_at
        self.recent: dict[int, int | list[int]] = {}
        # The recent entries again, as flat lists that convert to arrays quickly when they move.
        self.recent_keys: list[int] = []
        self.recent_rows: list[int] = []
        self.recent_count = self.staged_count = 0
        self.staged, self.merged = SortedBuckets(), SortedBuckets()

    def add(self, row: int, keys: list[int]) -> None:
        if self.recent.keys().isdisjoint(keys):  # the common case, in C
            self.recent.update(zip(keys, repeat(row)))
        else:
            for key in keys:
                rows = self.recent.get(key)
                if rows is None:
                    self.recent[key] = row
                elif isinstance(rows, int):
                    self.recent[key] = [rows, row]
                else:
                    rows.append(row)
        self.recent_keys += keys
        self.recent_rows += repeat(row, len(keys))
        self.recent_count += 1

    def recent_matches(self, keys: list[int]) -> set[int]:
        found: set[int] = set()
        if self.recent.keys().isdisjoint(keys):
            return found
        for key in keys:
            rows = self.recent.get(key)
            if isinstance(rows, int):
                found.add(rows)
            elif rows is not None:
                found.update(rows)
        return found

    def sorted_matches(self, keys: np.ndarray) -> dict[int, set[int]]:
        """Rows of the sorted tiers sharing a band key with each text of `keys` (texts x bands), for texts with any."""
        found: dict[int, set[int]] = {}
        wanted = keys.ravel()
        for tier in (self.staged, self.merged):
            for position, rows in tier.matches(wanted):
                found.setdefault(position // keys.shape[1], set()).update(rows.tolist())
        return found

    def settle(self) -> None:
        """Move recent rows to the staged tier, and staged rows to the merged tier, once each has enough."""
        if self.recent_count >= self.stage_at:
            self.staged.insert(np.array(self.recent_keys, np.uint64), np.array(self.recent_rows, np.uint32))
            self.staged_count += self.recent_count
            self.recent.clear()
            self.recent_keys, self.recent_rows, self.recent_count = [], [], 0
        if self.staged_count >= self.merge_at:
            self.merged.insert(self.staged.keys, self.staged.rows)
            self.staged, self.staged_count = SortedBuckets(), 0


class NearDuplicateIndex:
    """MinHash LSH over the kept prompts, with bands and rows per band chosen by datasketch."""

    def __init__(self, config: NearDuplicateConfig):
        self.threshold = config.threshold
        self.shingle_words = config.shingle_words
        self.permutations = MinHash(num_perm=config.num_perm, seed=config.seed, scheme="affine32").permutations
        weights = (1 - config.false_negative_weight, config.false_negative_weight)
        lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, weights=weights)
        self.bands, self.band_rows = lsh.b, lsh.r
        self.buckets = BandBuckets()
        # Distinct starting states make each band's keys its own.
        self.band_seeds = np.uint64(0xCBF29CE484222325) ^ (np.arange(self.bands, dtype=np.uint64) * _GOLDEN)
        self.signatures = RowStore(np.uint32)

    def batch(self, normalised: Sequence[str]) -> NearDuplicateBatch:
        self.buckets.settle()  # never during a batch: its sorted matches must stay valid
        signatures = minhash_signatures(*shingle_hashes(normalised, self.shingle_words), self.permutations)
        keys = self.band_keys(signatures)
        return NearDuplicateBatch(self, signatures, keys.tolist(), self.buckets.sorted_matches(keys))

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """64-bit FNV-1a hash of each band of each signature, seeded by band (texts x bands)."""
        bands = signatures[:, : self.bands * self.band_rows].reshape(len(signatures), self.bands, self.band_rows)
        keys = np.broadcast_to(self.band_seeds, bands.shape[:2])
        for column in range(self.band_rows):
            keys = (keys ^ bands[:, :, column]) * _FNV_PRIME
        return keys

    def similar_to_any(self, signature: np.ndarray, rows: set[int]) -> bool:
        """Whether the estimated Jaccard similarity with any of the kept rows reaches the threshold."""
        if not rows:
            return False
        agreement = (self.signatures.take(sorted(rows)) == signature).mean(axis=1)
        return bool(agreement.max() >= self.threshold)

    def add(self, signature: np.ndarray, keys: list[int]) -> None:
        self.buckets.add(self.signatures.append(signature), keys)


class NearDuplicateBatch:
    def __init__(self, index: NearDuplicateIndex, signatures: np.ndarray, keys: list[list[int]], sorted_matches: dict[int, set[int]]):
        self.index, self.signatures, self.keys, self.sorted_matches = index, signatures, keys, sorted_matches

    def is_duplicate(self, i: int) -> bool:
        candidates = self.index.buckets.recent_matches(self.keys[i]) | self.sorted_matches.get(i, set())
        return self.index.similar_to_any(self.signatures[i], candidates)

    def keep(self, i: int) -> None:
        self.index.add(self.signatures[i], self.keys[i])
