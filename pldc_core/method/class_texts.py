"""What CLIP's text tower reads for each class: one prompt from a template, or several descriptions.

``pldc.class_descriptions`` names a JSON file ``{"class name": ["description", ...], ...}``. A
class the file lists is described by its texts (a ``{}`` in a text is replaced by the class
name); a class it leaves out gets ``pldc.clip_template`` filled with its name. DICC embeds every
text of a class and averages them (``ClipClassifier.set_categories``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


class ClassDescriptionsError(ValueError):
    """A class-descriptions file is missing, malformed, or names classes the dataset lacks."""


def read_class_descriptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """The ``{class name: [texts]}`` of a descriptions file; ClassDescriptionsError names the file
    and the problem (not found, malformed JSON, not an object, an empty or non-text entry)."""
    from pldc_core.data.coco import DatasetError, read_json_file

    path = Path(path)
    try:
        raw = read_json_file(path, "class descriptions file not found (pldc.class_descriptions)")
    except DatasetError as exc:
        raise ClassDescriptionsError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ClassDescriptionsError(f"{path}: the top level must be a JSON object "
                                     f"{{class name: [descriptions]}}, got {type(raw).__name__}")
    if not raw:
        raise ClassDescriptionsError(f"{path}: no class is described (an empty object)")
    out = {}
    for name, texts in raw.items():
        if not isinstance(texts, list):
            raise ClassDescriptionsError(f"{path}: class {name!r}: expected a list of descriptions, "
                                         f"got {type(texts).__name__}")
        if not texts:
            raise ClassDescriptionsError(f"{path}: class {name!r}: the list of descriptions is empty "
                                         f"(leave the class out to use pldc.clip_template)")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ClassDescriptionsError(f"{path}: class {name!r}: description {i} must be non-empty "
                                             f"text, got {text!r}")
        out[name] = list(texts)
    return out


def class_prompts(names: Sequence[str], template: str, descriptions: Mapping[str, Sequence[str]] | None = None,
                  source: str = "class descriptions") -> list[list[str]]:
    """The texts of each class in ``names``: its descriptions, or ``template`` with its name.

    A description class that is not in ``names`` raises ClassDescriptionsError naming ``source``
    (the file) and the dataset's classes: a misspelt class would otherwise fall back silently.
    """
    descriptions = descriptions or {}
    unknown = [name for name in descriptions if name not in set(names)]
    if unknown:
        raise ClassDescriptionsError(
            f"{source}: unknown class name(s) {', '.join(repr(n) for n in unknown)}; the dataset's classes are "
            f"{', '.join(repr(n) for n in names)}")
    return [[text.replace("{}", name) for text in descriptions[name]] if name in descriptions
            else [template.format(name)] for name in names]
