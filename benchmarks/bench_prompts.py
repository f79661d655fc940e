"""How long prompt filtering takes, and how much memory, over 1,000,000 synthetic prompts.

The prompts come from templates and word lists, split into categories (dedup scopes; 8 by default),
each in unit order, with injected exact duplicates (case, spacing and punctuation variants) and near
duplicates (a word or two replaced, inserted or dropped) of earlier prompts of the same category.
Each pass runs in its own process, so its peak RSS is its own (reading the prompts included):

  pandas      exact dedup as one pandas pass: normalise with .str methods, then drop_duplicates
  exact       exact dedup with vipo_build.prompts.dedup (normalise, 64-bit hash, set)
  filters     the whole pass: PromptFilters with the default config (lint, blocklist, exact and
              near-duplicate dedup), every category's alive at once, then quota selection; it also
              reports the share of injected duplicates dropped
  datasketch  for comparison, datasketch's own MinHash.bulk + MinHashLSH on a sample, scaled up
  draws       the first round's expansion requests of pipelines/image_1m.yaml (1.6M over its five
              image categories): seed subject, facet values and text to render drawn for each, and
              how many of them are distinct per category, from the library alone and with the
              config's subject pass (a request it asks counts as distinct)

    .venv/bin/python benchmarks/bench_prompts.py [--prompts 1000000] [--categories 8] [--batch 4096]
        [--passes pandas,exact,filters,datasketch,draws]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipo_build.prompts.dedup import ExactDeduplicator, normalise  # noqa: E402
from vipo_build.prompts.filters import PromptFilterConfig, PromptFilters  # noqa: E402

QUOTA_SHARE = 0.8  # quota of each category: this share of its generated prompts
EXACT_SHARE, NEAR_SHARE = 0.04, 0.06

SUBJECTS = """an old fisherman mending nets|a red fox|a glass teapot|a lighthouse on a rocky cliff|a street market|
a young violinist|a vintage motorcycle|a bowl of ramen|a snow leopard|a desert caravan|a paper boat|a clockmaker's workshop|
a koi pond|a tram crossing a bridge|a child flying a kite|a greenhouse full of ferns|a jazz trio|a wooden sailboat|
a bonsai tree|an astronaut|a library with spiral stairs|a street dog|a chess player|a hot air balloon|a stone bridge|
a bakery window|a mountain monastery|a neon diner|a wheat field|a ballet dancer|a cargo ship|a rooftop garden|a barn owl|
a city skyline|a pottery studio|a steam locomotive|a coral reef|a flower vendor|a medieval castle|a tea plantation|
a subway platform|a mechanical owl|a samurai|a jellyfish|a bicycle courier|an abandoned amusement park|a grandmother knitting|
a surfer|a pair of hiking boots|a candle-lit chapel|a windmill|a crystal chandelier|a polar bear|a robot gardener|
a fountain pen|a bustling harbor|a sleeping cat|a waterfall|a watchtower|a marching band|a basket of lemons""".replace("\n", "").split("|")
ACTIONS = """standing alone|resting|waiting patiently|glowing softly|half hidden|seen from above|reflected in a puddle|
surrounded by fog|in the middle of a storm|caught mid-motion|framed by an archway|partly in shadow|covered in frost|
lit by a single lamp|drifting slowly|under falling leaves|beside a quiet road|at the edge of a forest|in a crowded square|
floating in the air""".replace("\n", "").split("|")
SETTINGS = """at dawn|at dusk|at golden hour|at blue hour|at midnight|on a rainy afternoon|in early spring|in deep winter|
on a humid summer night|during a snowstorm|under a full moon|on a foggy morning|in a heat haze|after the rain|
under a starry sky|in late autumn|at high noon|during a festival|under cherry blossoms|on a windy coast""".replace("\n", "").split("|")
LIGHTING = """soft window light|harsh midday sun|rim lighting|warm lantern light|cold fluorescent light|dappled sunlight|
volumetric light rays|neon reflections|candlelight|overcast diffuse light|low-key lighting|backlit silhouette|
moonlight|studio softbox light|firelight""".replace("\n", "").split("|")
PALETTES = """muted earth tones|teal and orange|pastel pink and mint|deep blues and gold|monochrome greys|vivid primary colors|
sepia|emerald and copper|lavender and peach|black and crimson|sun-bleached colors|icy blues and white""".replace("\n", "").split("|")
STYLES = """35mm film photograph|oil painting|watercolor|ukiyo-e woodblock print|charcoal sketch|isometric 3d render|
cinematic still|gouache illustration|linocut print|Polaroid snapshot|art nouveau poster|pixel art|macro photograph|
long exposure photograph|pencil drawing|digital matte painting|tilt-shift photograph|stained glass design""".replace("\n", "").split("|")
CAMERAS = """wide-angle shot|close-up|aerial view|low angle|eye-level shot|shallow depth of field|85mm portrait lens|
symmetrical composition|rule of thirds|dutch angle|telephoto compression|fisheye lens""".replace("\n", "").split("|")
MOODS = """serene|melancholic|joyful|mysterious|nostalgic|tense|whimsical|lonely|festive|dreamlike|eerie|hopeful""".split("|")
DETAILS = """steam rising from a cup|dust motes in the air|raindrops on glass|scattered autumn leaves|a faded hand-painted sign|
ripples on the water|a trail of footprints|laundry on a line|a flock of birds|cracks in old plaster|moss on the stones|
a flickering street lamp|petals on the ground|tangled electrical wires|a red umbrella|chalk drawings on the pavement|
a sleeping dog nearby|a distant train|an open book|a half-eaten apple""".replace("\n", "").split("|")
FILLERS = ["highly detailed", "intricate textures", "sharp focus", "subtle film grain", "rich contrast", "natural colors",
           "balanced composition", "gentle bokeh", "crisp edges", "soft shadows"]


def synthetic_prompt(rng: random.Random) -> str:
    subject, action, setting = rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(SETTINGS)
    clauses = [f"{rng.choice(LIGHTING)}", f"a palette of {rng.choice(PALETTES)}", f"{rng.choice(STYLES)}",
               f"{rng.choice(CAMERAS)}", f"{rng.choice(MOODS)} mood", f"with {rng.choice(DETAILS)}"]
    rng.shuffle(clauses)
    clauses = clauses[: rng.randint(4, 6)] + rng.sample(FILLERS, rng.randint(0, 3))
    opening = rng.choice(["{s} {a} {t}", "{S} {t}, {a}", "A scene of {s} {a} {t}", "{S}, {a}, {t}"])
    head = opening.format(s=subject, a=action, t=setting, S=subject[0].upper() + subject[1:])
    background = f" In the background, {rng.choice(DETAILS)} and {rng.choice(DETAILS)}." if rng.random() < 0.7 else ""
    return head[0].upper() + head[1:] + ", " + ", ".join(clauses) + "." + background


def exact_variant(text: str, rng: random.Random) -> str:
    variant = rng.choice([str.upper, str.lower, str.title])(text)
    return variant.replace(", ", rng.choice([" , ", ",  ", "; ", " - "])) + rng.choice(["", "!", " ."])


def near_variant(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 2)):
        position = rng.randrange(len(words))
        edit = rng.random()
        if edit < 0.5:
            words[position] = rng.choice(MOODS + FILLERS[:3])
        elif edit < 0.8:
            words.insert(position, rng.choice(["very", "softly", "quite", "beautifully", "old"]))
        elif len(words) > 8:
            del words[position]
    return " ".join(words)


def shingle_jaccard(a: str, b: str, size: int) -> float:
    def shingles(text: str) -> set[tuple[str, ...]]:
        words = normalise(text).split()
        return {tuple(words[i : i + size]) for i in range(max(len(words) - size + 1, 1))}

    first, second = shingles(a), shingles(b)
    return len(first & second) / len(first | second)


KINDS = ("original", "exact", "near")


@dataclass
class Prompts:
    """Prompts category after category, in unit order, and what was injected where."""

    texts: list[str]
    category: np.ndarray  # category number
    kind: np.ndarray  # index into KINDS
    source: np.ndarray  # row an injected duplicate copies, else -1
    jaccard: np.ndarray  # true shingle Jaccard similarity of an injected duplicate with its source

    def save(self, directory: Path) -> None:
        (directory / "texts.txt").write_text("\n".join(self.texts))
        np.savez(directory / "meta.npz", category=self.category, kind=self.kind, source=self.source, jaccard=self.jaccard)

    @classmethod
    def load(cls, directory: Path) -> Prompts:
        meta = np.load(directory / "meta.npz")
        with open(directory / "texts.txt") as lines:  # line by line: no whole-file string to inflate the peak
            texts = [line.rstrip("\n") for line in lines]
        return cls(texts, **{name: meta[name] for name in meta.files})

    def category_slices(self) -> list[slice]:
        bounds = np.flatnonzero(np.diff(self.category)) + 1
        edges = [0, *bounds.tolist(), len(self.texts)]
        return [slice(a, b) for a, b in zip(edges, edges[1:])]


def generate(n: int, categories: int, seed: int) -> Prompts:
    """Each injected duplicate copies an earlier prompt of its category."""
    rng = random.Random(seed)
    shingle_words = PromptFilterConfig().near_duplicates.shingle_words
    texts: list[str] = []
    category, kind, source, jaccard = [], [], [], []
    per_category = n // categories
    for c in range(categories):
        first = len(texts)
        for _ in range(per_category):
            roll, copied, similarity = rng.random(), -1, 0.0
            if len(texts) > first and roll < EXACT_SHARE + NEAR_SHARE:
                copied = rng.randrange(first, len(texts))
                if roll < EXACT_SHARE:
                    text, what, similarity = exact_variant(texts[copied], rng), 1, 1.0
                else:
                    text, what = near_variant(texts[copied], rng), 2
                    similarity = shingle_jaccard(text, texts[copied], shingle_words)
            else:
                text, what = synthetic_prompt(rng), 0
            texts.append(text)
            category.append(c)
            kind.append(what)
            source.append(copied)
            jaccard.append(similarity)
    return Prompts(texts, np.array(category, np.int8), np.array(kind, np.int8), np.array(source), np.array(jaccard, np.float32))


# Passes (each in its own process) --------------------------------------------------------


def pandas_pass(prompts: Prompts) -> dict:
    frame = pd.DataFrame({"category": prompts.category, "text": prompts.texts})
    keys = (frame["text"].str.normalize("NFKC").str.casefold().str.replace(r"[^\w\s]", " ", regex=True)
            .str.split().str.join(" "))
    kept = frame.assign(key=keys).drop_duplicates(subset=["category", "key"])
    return {"kept": len(kept)}


def exact_pass(prompts: Prompts, batch: int) -> dict:
    kept = 0
    for rows in prompts.category_slices():
        index, texts = ExactDeduplicator(), prompts.texts[rows]
        for start in range(0, len(texts), batch):
            keys = index.batch([normalise(text) for text in texts[start : start + batch]])
            for i in range(len(keys.keys)):
                if not keys.is_duplicate(i):
                    keys.keep(i)
                    kept += 1
    return {"kept": kept}


def filters_pass(prompts: Prompts, batch: int) -> tuple[dict, np.ndarray]:
    drops: Counter = Counter()
    keep = np.zeros(len(prompts.texts), bool)
    selected = 0
    quota = int(len(prompts.texts) / len(prompts.category_slices()) * QUOTA_SHARE)
    kept_alive = []  # a run holds every category's filters at once
    for rows in prompts.category_slices():
        filters = PromptFilters(PromptFilterConfig())
        kept_alive.append(filters)
        for start in range(rows.start, rows.stop, batch):
            chunk = prompts.texts[start : min(start + batch, rows.stop)]
            keep[start : start + len(chunk)] = filters.filter(chunk, drops)
        selected += len(np.flatnonzero(keep[rows])[:quota])  # quota: the first kept prompts in unit order
    result = {"kept": int(keep.sum()), "selected": selected, "quota_per_category": quota, "drops": dict(sorted(drops.items()))}
    return result, keep


def injected_caught(prompts: Prompts, keep: np.ndarray) -> dict:
    """Share of injected duplicates dropped, among those whose source was kept (else they compete with others)."""
    threshold = PromptFilterConfig().near_duplicates.threshold
    source_kept = np.zeros(len(keep), bool)
    injected = prompts.source >= 0
    source_kept[injected] = keep[prompts.source[injected]]

    def dropped(mask: np.ndarray) -> str:
        return f"{(~keep[mask]).mean():.4f} of {mask.sum()}"

    near = (prompts.kind == 2) & source_kept
    return {
        "exact": dropped((prompts.kind == 1) & source_kept),
        f"near_jaccard>={threshold}": dropped(near & (prompts.jaccard >= threshold)),
        f"near_jaccard>={threshold + 0.1:.1f}": dropped(near & (prompts.jaccard >= threshold + 0.1)),
        f"near_jaccard<{threshold}": dropped(near & (prompts.jaccard < threshold)),
        "originals": dropped(prompts.kind == 0),
    }


def datasketch_pass(prompts: Prompts, sample: int) -> dict:
    from datasketch import MinHash, MinHashLSH

    config = PromptFilterConfig().near_duplicates
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm,
                     weights=(1 - config.false_negative_weight, config.false_negative_weight))
    size = config.shingle_words
    shingled = []
    for text in prompts.texts[:sample]:
        words = normalise(text).split()
        shingled.append([" ".join(words[i : i + size]).encode() for i in range(max(len(words) - size + 1, 1))])
    minhashes = MinHash.bulk(shingled, num_perm=config.num_perm, seed=config.seed)
    kept = 0
    for key, minhash in enumerate(minhashes):
        if not lsh.query(minhash):  # datasketch's LSH answers candidates, unconfirmed
            lsh.insert(key, minhash)
            kept += 1
    return {"kept": kept, "sample": sample}


def draws_pass() -> dict:
    from vipo_build.config import load_config
    from vipo_build.prompts.expand import first_round_draws

    config, _ = load_config(REPO / "pipelines" / "image_1m.yaml")
    unit = config.generate.unit_size
    result = {}
    for name, quota in config.quotas().items():
        units = config.first_round_units(quota)
        category = config.category(name)
        result[name] = {"requests": units * unit, "distinct_library_only": first_round_draws(category, config.seed, units, unit),
                        "distinct": first_round_draws(category, config.seed, units, unit, config.prompts.subjects.share)}
    result["requests"] = sum(r["requests"] for r in result.values())
    return result


def run_pass(name: str, data: Path, batch: int, sample: int) -> None:
    prompts = Prompts.load(data)
    loaded = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = loaded.ru_utime + loaded.ru_stime
    start = time.perf_counter()
    keep = None
    if name == "pandas":
        result = pandas_pass(prompts)
    elif name == "exact":
        result = exact_pass(prompts, batch)
    elif name == "filters":
        result, keep = filters_pass(prompts, batch)
    elif name == "draws":
        result = draws_pass()
    else:
        result = datasketch_pass(prompts, sample)
    result["seconds"] = round(time.perf_counter() - start, 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime - cpu_before, 2)  # less sensitive to other load
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    result["rss_with_prompts_loaded_gib"] = round(loaded.ru_maxrss / 2**20, 2)
    if keep is not None:
        result["injected_dropped"] = injected_caught(prompts, keep)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--categories", type=int, default=8, help="Dedup scopes the prompts are split into.")
    parser.add_argument("--batch", type=int, default=4096, help="Prompts per PromptFilters.filter call (16 = one unit).")
    parser.add_argument("--passes", default="pandas,exact,filters,datasketch,draws")
    parser.add_argument("--sample", type=int, default=20_000, help="Prompts of the datasketch pass (scaled to --prompts).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-pass", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_pass:
        run_pass(args.run_pass, args.data, args.batch, args.sample)
        return

    start = time.perf_counter()
    prompts = generate(args.prompts, args.categories, args.seed)
    counts = {kind: int((prompts.kind == i).sum()) for i, kind in enumerate(KINDS)}
    words = np.array([len(text.split()) for text in prompts.texts])
    print(f"{len(prompts.texts):,} prompts in {time.perf_counter() - start:.1f} s: {counts}; "
          f"words per prompt: mean {words.mean():.0f}, {words.min()}-{words.max()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        prompts.save(data)
        del prompts
        for name in args.passes.split(","):
            command = [sys.executable, __file__, "--run-pass", name, "--data", str(data),
                       "--batch", str(args.batch), "--sample", str(args.sample)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            if name == "datasketch":
                scale = args.prompts / result["sample"]
                result["seconds_scaled_to_all_prompts"] = round(result["seconds"] * scale, 1)
            print(f"{name:<11} {json.dumps(result)}  (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
