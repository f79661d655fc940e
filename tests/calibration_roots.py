"""Dataset roots for the calibration tests, written by the real shard writer: kept pairs whose
media are either text naming the pair and side, or real images or clips."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vipo_build.generate.encode import encode_video
from vipo_build.records import Candidate, Pair, Prompt, Verdict, Vote
from vipo_build.runtime.storage import Storage
from vipo_build.seeding import derive_seed
from vipo_build.shards.writer import write_shard

DIMENSIONS = ("alignment", "aesthetics")
Media = Callable[[str, str], bytes]  # (pair key, "chosen" or "rejected") -> the candidate's file


def text_media(key: str, side: str) -> bytes:
    return f"{key}/{side}".encode()


def jpeg_media(key: str, side: str) -> bytes:
    """A 96x64 picture of coloured noise and stripes, different for every pair and side."""
    rng = np.random.default_rng(derive_seed("test media", key, side))
    base = rng.integers(40, 216, size=3)
    pixels = np.clip(base + rng.normal(0, 35, (64, 96, 3)), 0, 255)
    pixels[:, ::12] = 255 - base  # stripes: detail a blur visibly removes
    sink = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(sink, format="JPEG", quality=92)
    return sink.getvalue()


def mp4_media(key: str, side: str) -> bytes:
    """A 16-frame 96x64 clip of a bar sweeping over noise."""
    rng = np.random.default_rng(derive_seed("test media", key, side))
    frames = rng.integers(0, 60, (16, 64, 96, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        frame[:, 5 * t:5 * t + 8] = 255
    return encode_video(frames, 8)


def make_pair(category: str, i: int, media: Media = text_media) -> Pair:
    key = f"{category}-u{i // 8:06d}-p{i % 8:03d}"
    video = media is mp4_media
    prompt = Prompt(id=key, category=category, modality="video" if video else "image", unit=i // 8, index=i % 8, round=0,
                    seed_subject="a lighthouse", text=f"{category} prompt {i}", expansion_model="llm")
    sides = [Candidate(prompt_id=key, side=s, generator="flux", seed=2 * i + s, width=96, height=64, format="mp4" if video else "jpg",
                       media=media(key, ("chosen", "rejected")[s])) for s in (0, 1)]
    scores = [{d: 4 for d in DIMENSIONS}, {d: 2 for d in DIMENSIONS}]
    votes = [Vote(judge="j", order=o, view="image", sample=k, seed=k, winner_side=0, scores=scores) for o in ("AB", "BA") for k in range(2)]
    verdict = Verdict(pair_id=key, kept=True, reason="kept", chosen_side=0, vote_share=1.0, order_consistent=True,
                      votes_for=[4, 0, 0], mean_scores=[{d: 4.0 for d in DIMENSIONS}, {d: 2.0 for d in DIMENSIONS}],
                      votes=votes)
    return Pair(key=key, prompt=prompt, chosen=sides[0], rejected=sides[1], verdict=verdict)


def make_root(path: Path | str, sizes: dict[str, int], media: Media = text_media) -> str:
    pairs = [make_pair(category, i, media) for category, n in sizes.items() for i in range(n)]
    storage = Storage(str(path))
    for s, shard_pairs in enumerate((pairs[::2], pairs[1::2])):  # categories mixed over two shards
        write_shard(storage, f"train-{s:06d}", shard_pairs)
    return str(path)
