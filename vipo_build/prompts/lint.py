"""Lint rules of a prompt's surface: length, URLs, quotes, brackets, control characters, loops."""

from __future__ import annotations

import re

from vipo_build.prompts.filter_config import LintConfig

# Web addresses, searched in the lowercased text. Substring checks guard the patterns and the domain
# pattern starts with a literal "." that `re` scans for quickly: one combined pattern, tried at every
# position, took ~20 us a prompt.
_SCHEME = re.compile(r"[a-z0-9]://\S")  # any scheme: http://, ftp://, s3://
_WWW = re.compile(r"\bwww\.\w")
_EMAIL = re.compile(r"[\w.+-]@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_TOP_LEVEL_DOMAIN = re.compile(r"\.(?:com|org|net|io|ai|co|gov|edu|info|biz|app|dev|xyz|ly|me|tv|uk|de|fr|jp|cn|ru)\b")


def has_url(text: str) -> bool:
    """Whether the text has a URL, a www. address, an e-mail address or a bare domain name."""
    lower = text.lower()
    return bool(
        ("://" in lower and _SCHEME.search(lower))
        or ("www." in lower and _WWW.search(lower))
        or ("@" in lower and _EMAIL.search(lower))
        or any(_ends_a_name(lower, m.start()) for m in _TOP_LEVEL_DOMAIN.finditer(lower))
    )


def _ends_a_name(text: str, position: int) -> bool:
    """Whether a domain name ends just before `position` (so "end. com" is no address)."""
    return position > 0 and (text[position - 1].isalnum() or text[position - 1] == "-")


# Control characters (tab, newline and carriage return are whitespace), lone surrogates, private use,
# and the bidirectional overrides and isolates that make text display differently from how it reads.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff]")


class Pairs:
    """Opening and closing characters that must nest, e.g. brackets."""

    def __init__(self, closing_to_opening: dict[str, str]):
        self.opening_of = closing_to_opening
        self.characters = "".join(closing + opening for closing, opening in closing_to_opening.items())
        self.any = re.compile("[" + re.escape(self.characters) + "]")

    def balanced(self, text: str) -> bool:
        """Every closing character matches the last unclosed opening one, and none is left open."""
        if not any(map(text.__contains__, self.characters)):  # substring search beats the regex scan
            return True
        stack: list[str] = []
        for char in self.any.findall(text):
            if char not in self.opening_of:
                stack.append(char)
            elif not stack or stack.pop() != self.opening_of[char]:
                return False
        return not stack


_BRACKETS = Pairs({")": "(", "]": "[", "}": "{"})
_CURLY_QUOTES = Pairs({"\u201d": "\u201c", "\u00bb": "\u00ab"})  # ” closes “, » closes «


def repeated_share(words: list[str]) -> float:
    """Share of a text's word trigrams that repeat an earlier trigram of the same text."""
    count = len(words) - 2
    return 1 - len(set(zip(words, words[1:], words[2:]))) / count if count > 0 else 0.0


def lint_problem(text: str, words: list[str], config: LintConfig) -> str | None:
    """The first rule `text` breaks, as a drop reason, or None. `words` are the words of its normalised text."""
    if config.check_control_chars and _CONTROL.search(text):
        return "control_chars"
    if len(text) < config.min_chars:
        return "too_short"
    if config.max_chars is not None and len(text) > config.max_chars:
        return "too_long"
    if len(words) < config.min_words:
        return "too_few_words"
    if not config.allow_urls and has_url(text):
        return "url"
    if config.check_quotes and (text.count('"') % 2 or not _CURLY_QUOTES.balanced(text)):
        return "unbalanced_quotes"
    if config.check_brackets and not _BRACKETS.balanced(text):
        return "unbalanced_brackets"
    # A repeated trigram starts at a repeated word, so few repeated words rule a loop out cheaply.
    repeated_words = len(words) - len(set(words))
    if repeated_words > config.max_repeated_share * (len(words) - 2) and repeated_share(words) > config.max_repeated_share:
        return "repetition"
    return None
