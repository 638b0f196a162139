"""Natural order of sample ids: ``01/2`` before ``01/10``.

One order for everything that lists samples to a person or a file: the annotator's review queue
and "Next flagged" (:mod:`annotator_app.review_queue`) and ``hmtools export`` without
``--samples`` (COCO image ids, YouTube-VIS video ids, HDF5 groups).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

_DIGIT_RUN = re.compile(r"\d+")


def _number(match: re.Match[str]) -> str:
    """A digit run as text that sorts by its value: NUL, the length without leading zeros, the digits."""
    run = match.group()
    if not run.isascii():  # other scripts' decimal digits (Nd), e.g. Arabic-Indic
        run = "".join(str(unicodedata.decimal(c)) for c in run)
    digits = run.lstrip("0")
    return "\x00" + chr(min(len(digits), 0x10FFFF)) + digits


@lru_cache(maxsize=1 << 17)  # ids repeat on every queue refresh; ~0.2 s for 100k ids uncached, 14 ms cached
def natural_key(sample_id: str) -> tuple[str, str]:
    """Sort key of a sample id in natural order: digit runs compare as numbers (``01/2`` < ``01/10``,
    ``r9/0`` < ``r10/0``; leading zeros ignored), the text between them by Unicode case folding
    (``Zürich`` == ``ZÜRICH``), a number before any text at the same place; ties (``01/7`` vs
    ``1/07``, case) are broken by the raw id in code point order, so the order is total.

    Returns:
        ``(folded text with each digit run encoded to sort by value, sample_id)``.
    """
    return _DIGIT_RUN.sub(_number, sample_id.casefold()), sample_id


def natural_sorted(sample_ids: Iterable[str]) -> list[str]:
    """``sample_ids`` as a new list in natural order (:func:`natural_key`; a total order, so the
    result does not depend on the input order)."""
    return sorted(sample_ids, key=natural_key)
