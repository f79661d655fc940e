"""Settings of the prompt filters (`prompts.filters` in a pipeline YAML).

Kept apart from the filters themselves so that loading a config imports neither numpy nor the
embedding model's libraries.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from vipo_build.strict import StrictModel


# A dotted import path to a callable: "package.module:function" or "package.module.function".
CALLABLE_PATH = r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$"


class LintConfig(StrictModel):
    """Rules every prompt must pass; each failing rule is its own drop reason."""

    min_chars: int = Field(10, ge=1, description="Shorter prompts are dropped (reason: too_short).")
    max_chars: int | None = Field(
        None, ge=1, description="Longer prompts are dropped (reason: too_long); default: no bound beyond prompts.max_chars."
    )
    min_words: int = Field(3, ge=1, description="Prompts with fewer words are dropped (reason: too_few_words).")
    allow_urls: bool = Field(False, description="Keep prompts with URLs, web addresses or e-mail addresses (else reason: url).")
    check_quotes: bool = Field(
        True,
        description='Drop prompts with an odd number of " or unmatched curly double quotes (reason: unbalanced_quotes); '
        "single quotes are not checked, they double as apostrophes.",
    )
    check_brackets: bool = Field(True, description="Drop prompts with unmatched (), [] or {} (reason: unbalanced_brackets).")
    check_control_chars: bool = Field(
        True,
        description="Drop prompts with control characters other than tab, newline and carriage return, private-use characters, lone "
        "surrogates or bidirectional overrides (reason: control_chars).",
    )
    max_repeated_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Most word trigrams of a prompt that may repeat an earlier trigram of the same prompt, as a share; "
        "above it the prompt is dropped as a generation loop (reason: repetition).",
    )


class SafetyConfig(StrictModel):
    """Unsafe prompts are dropped: blocklisted words and phrases (reason: blocklist), then an optional classifier (reason: unsafe)."""

    blocklists: list[str] = Field(
        default_factory=lambda: ["en"],
        description="Languages whose blocklist (vipo_build/blocklists/<language>.txt) applies to every prompt; entries "
        "match whole words after the same normalisation as exact dedup.",
    )
    classifier: str | None = Field(
        None,
        pattern=CALLABLE_PATH,
        description='Import path ("package.module:function") of a callable (texts: list[str]) -> list[bool] that returns '
        "True for each unsafe text; it sees only prompts that passed the other checks.",
    )
    classifier_batch_size: int = Field(64, ge=1, description="Most texts per classifier call.")

    @field_validator("blocklists")
    @classmethod
    def _language_codes(cls, languages: list[str]) -> list[str]:
        bad = [lang for lang in languages if not lang.replace("-", "").replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"blocklist languages must be codes like 'en' or 'pt-BR', got {bad}")
        return languages


class NearDuplicateConfig(StrictModel):
    """MinHash LSH over word shingles: a prompt whose estimated Jaccard similarity to a kept prompt of its
    category reaches the threshold is dropped (reason: near_duplicate)."""

    enabled: bool = Field(True, description="Drop near-duplicates.")
    threshold: float = Field(0.7, gt=0, le=1, description="Estimated Jaccard similarity of word-shingle sets that counts as a near-duplicate.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations: more estimate similarity better and cost time and memory.")
    shingle_words: int = Field(3, ge=1, le=8, description="Words per shingle (prompts with fewer words are one shingle).")
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations.")
    false_negative_weight: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="Weight of missed near-duplicates against needless candidates when datasketch picks the LSH bands; "
        "candidates are confirmed by their signatures, so a high weight costs time, not precision.",
    )


class EmbeddingDedupConfig(StrictModel):
    """Sentence-embedding dedup: a prompt whose cosine similarity to a kept prompt of its category reaches
    the threshold is dropped (reason: semantic_duplicate)."""

    model: str = Field(description="Local sentence-transformers model directory (absolute, or relative to the config file).")
    threshold: float = Field(0.92, gt=0, le=1, description="Cosine similarity that counts as a semantic duplicate.")
    batch_size: int = Field(64, ge=1, description="Texts per encoder forward pass.")
    device: str = Field("cpu", description='Torch device of the encoder, e.g. "cpu" or "cuda".')


class PromptFilterConfig(StrictModel):
    """Checks an expanded prompt must pass to be kept, in this order: lint rules, blocklist, exact dedup,
    classifier, near-duplicate dedup, embedding dedup. Dedup compares with the kept prompts of the same category."""

    lint: LintConfig = Field(default_factory=LintConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    exact_dedup: bool = Field(
        True, description="Drop prompts equal to a kept one after NFKC, casefolding and ignoring punctuation and spacing (reason: duplicate)."
    )
    near_duplicates: NearDuplicateConfig = Field(default_factory=NearDuplicateConfig)
    embedding: EmbeddingDedupConfig | None = Field(None, description="Embedding dedup; off unless a model is given.")
