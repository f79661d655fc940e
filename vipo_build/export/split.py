"""Train/val/test splits by seed subject, with each category's share kept per split.

A subject's pairs (and so its prompts) all go to one split. The splits other than the largest are
filled first, subject by subject in an order fixed by the seed, taking a subject only while it
fits every category's remaining target; the largest split takes the rest. Targets are each
category's pairs times the split's share, rounded by largest remainder, so a split holds each
category within one pair of its share whenever the subjects' sizes allow it; `achieved` says
what came out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from vipo_build.errors import VipoError


def parse_split(text: str) -> dict[str, float]:
    """'train=0.98,validation=0.01,test=0.01' -> {'train': 0.98, ...}; shares must be positive and sum to 1."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        try:
            share = float(value)
        except ValueError:
            raise VipoError(f"--split: {part.strip()!r} is not NAME=SHARE") from None
        if not name or name in shares or not 0 < share <= 1:
            raise VipoError(f"--split: {part.strip()!r}: each split needs a new name and a share in (0, 1]")
        shares[name] = share
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise VipoError(f"--split: the shares sum to {sum(shares.values()):g}, not 1")
    return shares


def targets(counts: dict[str, int], shares: dict[str, float]) -> dict[str, dict[str, int]]:
    """Pairs of each category per split: its share of the category, rounded by largest remainder."""
    out: dict[str, dict[str, int]] = {split: {} for split in shares}
    names = list(shares)
    for category, n in counts.items():
        exact = np.array([shares[s] * n for s in names])
        whole = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - whole), kind="stable")[: n - whole.sum()]:
            whole[i] += 1
        for split, k in zip(names, whole.tolist()):
            out[split][category] = k
    return out


def assign(categories: list[str], subjects: list[str], shares: dict[str, float], seed: int) -> list[str]:
    """The split of each pair, given its category and seed subject (parallel lists)."""
    counts: dict[str, int] = defaultdict(int)
    by_subject: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for category, subject in zip(categories, subjects):
        counts[category] += 1
        by_subject[subject][category] += 1
    remaining = targets(counts, shares)
    rest = max(shares, key=shares.get)
    small = [s for s in shares if s != rest]
    order = sorted(by_subject, key=lambda subject: hashlib.sha256(f"{seed}:{subject}".encode()).digest())
    split_of: dict[str, str] = {}
    for subject in order:
        need = by_subject[subject]
        split_of[subject] = next((s for s in small if all(n <= remaining[s][c] for c, n in need.items())), rest)
        for category, n in need.items():
            remaining[split_of[subject]][category] -= n
    return [split_of[subject] for subject in subjects]


def achieved(categories: list[str], splits: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for category, split in zip(categories, splits):
        out[split][category] += 1
    return {split: dict(sorted(c.items())) for split, c in sorted(out.items())}
