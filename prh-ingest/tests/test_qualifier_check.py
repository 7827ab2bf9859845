"""The COPY feed's qualifier check (copy_feed.QualifierCheck), which runs its regex over a
chunk's own bytes: the same answer as the same regex over the chunk's byte classes (the
chunk mapped by bytes.translate first, as the feed did before), on hand cases and on random
chunks, for the shapes' delimiters and qualifiers and for characters a regex set must
escape or that share a UTF-8 lead byte."""

from __future__ import annotations

import random
import re

import pytest
from prh_ingest.load.copy_feed import NO_QUOTE_STANDIN, QualifierCheck, byte_classes

# The check as it was: the chunk's bytes mapped to their classes, then the class regex.
CLASS_READ_ALIKE = re.compile(rb"(?:[^Q]*(?<![xR])Q[^Q]*Q)*(?:[^Q]*(?<![xR])Q)?[^Q]*")
CLASS_INSIDE_TO_ITS_END = re.compile(rb"[^Q]*Q")


def read_alike_by_classes(chunk: bytes, inside: bool, delimiter: str, quote: str) -> bool:
    classes = chunk.translate(byte_classes(delimiter, quote))
    start = 0
    if inside and (closed := CLASS_INSIDE_TO_ITS_END.match(classes)):
        start = closed.end()
    return CLASS_READ_ALIKE.fullmatch(classes, start) is not None


# The shapes' own, and characters a set must escape (`]` `\\` `-` `^`) or that share a
# UTF-8 lead byte (`¦` and `§`: C2 A6, C2 A7).
LAYOUTS = [
    *((delimiter, quote) for delimiter in (",", "|", "^", "\t", ";") for quote in ('"', "'")),
    (",", NO_QUOTE_STANDIN),
    ("]", '"'),
    ("-", "\\"),
    ("\\", "^"),
    (",", "]"),
    ("¦", "§"),
    ("§", '"'),
]

HAND_CASES = [  # (chunk, starts inside a quoted value, COPY reads it as the csv reader)
    (b'1,"a, b",c\n2,"say ""hi""",d\n', False, True),
    (b'1,"two\nlines",c\n', False, True),
    (b'1,5" laceration,c\n', False, False),
    (b'1,wound 12",c\n2,x,y\n', False, False),
    (b'1,a""b,c\n', False, False),
    (b'1,"open to the next chunk\n', False, True),
    (b'end of a value",b\n2,c,d\n', True, True),
    (b'end of a value",b\n2,12",d\n', True, False),
    (b'"\\."\n', False, True),
    (b'\r\n"a",b\r\n', False, True),
    (b'x\r"a",b\n', False, False),  # the check counts no lone \r as a value's start
    ('1,"Renée, O\'Brien",ß\n'.encode(), False, True),
]


@pytest.mark.parametrize(("chunk", "inside", "alike"), HAND_CASES)
def test_hand_cases(chunk: bytes, inside: bool, alike: bool) -> None:
    assert QualifierCheck(",", '"').read_alike(chunk, inside) is alike
    assert read_alike_by_classes(chunk, inside, ",", '"') is alike


@pytest.mark.parametrize(("delimiter", "quote"), LAYOUTS, ids=[repr(layout) for layout in LAYOUTS])
def test_random_chunks_read_as_their_classes_do(delimiter: str, quote: str) -> None:
    alphabet = [delimiter, quote, "\n", "\r", "a", "é", "¦", "§", "\xa0", "\\", ".", ",", '"', "]"]
    check = QualifierCheck(delimiter, quote)
    draw = random.Random(f"{delimiter}{quote}")  # noqa: S311 - test data, seeded to repeat
    answers = set()
    for _ in range(3000):
        chunk = "".join(draw.choices(alphabet, k=draw.randrange(0, 24))).encode()
        inside = draw.random() < 0.3
        expected = read_alike_by_classes(chunk, inside, delimiter, quote)
        assert check.read_alike(chunk, inside) is expected, (chunk, inside)
        answers.add(expected)
    assert answers == {True, False}  # both answers were reached
