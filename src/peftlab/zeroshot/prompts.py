"""Class-name and prompt-template files: one entry per line, ``#`` comments and blank lines skipped.

The line order of a class-name file is the label order (a name may occur twice: ImageNet's ``missile`` and
``sunglasses`` do); a template holds ``{}`` once, where the class name goes (``str.format``, as open_clip's
``build_zero_shot_classifier`` fills string templates), and no other brace.
"""

from __future__ import annotations

from pathlib import Path

from peftlab.errors import PeftlabError


def _entries(path: Path, what: str) -> list[tuple[int, str]]:
    if not path.is_file():
        raise PeftlabError(f"{path}: {what} file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise PeftlabError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    entries = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
    entries = [(number, text) for number, text in entries if text and not text.startswith("#")]
    if not entries:
        raise PeftlabError(f"{path}: no {what} in the file (one per line; '#' starts a comment line)")
    return entries


def read_class_names(path: str | Path) -> list[str]:
    """The class names of ``path`` in label order."""
    return [text for _, text in _entries(Path(path), "class-name")]


def read_templates(path: str | Path) -> list[str]:
    """The prompt templates of ``path``, each checked to hold ``{}`` exactly once and no other brace."""
    path = Path(path)
    templates = []
    for number, text in _entries(path, "prompt-template"):
        if text.count("{}") != 1 or text.count("{") != 1 or text.count("}") != 1:
            raise PeftlabError(f"{path}:{number}: a template holds '{{}}' exactly once (for the class name) "
                               f"and no other brace, got {text!r}")
        templates.append(text)
    return templates
