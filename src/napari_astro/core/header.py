"""FITS headers without astropy: :class:`Header` and :class:`Card`.

``AstroImage.header`` is a :class:`Header`. It parses and formats 80-character FITS
cards exactly as :mod:`astropy.io.fits` does (keywords, strings with ``''`` escapes,
logicals, integers, reals, comments, COMMENT/HISTORY/blank commentary cards,
HIERARCH keywords, CONTINUE long strings), and offers the part of astropy's
``Header`` API this package uses: item access with ``(value, comment)`` tuples,
``in``, ``get``, ``keys``/``values``/``items``/``cards``/``comments``, ``copy``,
``add_history``/``add_comment``, ``append``/``extend``/``insert``, ``remove``/``pop``,
``update``/``set``, ``count``/``index``, ``tostring``/``fromstring``.

Why: ``import astropy.io.fits`` costs 0.18 s and 25 MB of resident memory (it
imports astropy.units), more than a 4-light Seestar stack spends on its pixels'
I/O. Anything not implemented here is handed to astropy: :meth:`Header.to_astropy`
converts (card images are re-parsed by astropy, so nothing is lost), and unknown
attributes are looked up on that converted header (a mutating method's effect is
copied back). :meth:`Header.from_astropy` goes the other way; :func:`is_header`
accepts both kinds.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

__all__ = ["Header", "Card", "UNDEFINED", "is_header", "HeaderParseError", "CARD_LENGTH",
           "BLOCK_LENGTH"]

CARD_LENGTH = 80
BLOCK_LENGTH = 2880
KEYWORD_LENGTH = 8
_COMMENTARY = frozenset(("", "COMMENT", "HISTORY"))
_SPECIAL = frozenset(("", "COMMENT", "HISTORY", "END", "CONTINUE"))
_END_CARD = "END" + " " * 77


class HeaderParseError(ValueError):
    """A card this module does not parse the way astropy would (the caller then lets
    astropy read the file)."""


class _Undefined:
    """The value of a keyword without one (astropy's ``UNDEFINED``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self):
        return (_Undefined, ())


UNDEFINED = _Undefined()

# --- astropy.io.fits.card's regular expressions (astropy 8.0), same semantics -------
_keywd_FSC_RE = re.compile(r"^[A-Z0-9_-]{0,8}$")
_keywd_hierarch_RE = re.compile(r"^(?:HIERARCH +)?(?:^[ -<>-~]+ ?)+$", re.IGNORECASE)
_digits_NFSC = r"(\.\d+|\d+(\.\d*)?) *([deDE] *[+-]? *\d+)?"
_digits_FSC = r"(\.\d+|\d+(\.\d*)?)([DE][+-]?\d+)?"
_numr_NFSC = r"[+-]? *" + _digits_NFSC
_numr_FSC = r"[+-]?" + _digits_FSC
_number_NFSC_RE = re.compile(rf"(?P<sign>[+-])? *0*?(?P<digt>{_digits_NFSC})")
_strg = r"\'(?P<strg>([ -~]+?|\'\'|) *?)\'(?=$|/| )"
_comm_field = r"(?P<comm_field>(?P<sepr>/ *)(?P<comm>(.|\n)*))"
_strg_comment_RE = re.compile(f"({_strg})? *{_comm_field}?$")
_ascii_text_re = re.compile(r"[ -~]*\Z")
_value_NFSC_RE = re.compile(
    r"(?P<value_field> *"
    r"(?P<value>"
    rf"{_strg}|"
    r"(?P<bool>[FT])|"
    r"(?P<numr>" + _numr_NFSC + r")|"
    r"(?P<cplx>\( *"
    r"(?P<real>" + _numr_NFSC + r") *, *"
    r"(?P<imag>" + _numr_NFSC + r") *\))"
    rf")? *){_comm_field}?$")
_rvkc_identifier = r"[a-zA-Z_]\w*"
_rvkc_field = _rvkc_identifier + r"(\.\d+)?"
_rvkc_field_specifier_s = rf"{_rvkc_field}(\.{_rvkc_field})*"
_rvkc_field_specifier_val = rf"(?P<keyword>{_rvkc_field_specifier_s}): +(?P<val>{_numr_FSC})"
_rvkc_keyword_val_comm_RE = re.compile(
    rf" *\'(?P<rawval>{_rvkc_field_specifier_val})\' *(/ *(?P<comm>[ -~]*))?$")
_rvkc_field_specifier_val_RE = re.compile(_rvkc_field_specifier_val + "$")
_rvkc_keyword_name_RE = re.compile(
    rf"(?P<keyword>{_rvkc_identifier})\.(?P<field_specifier>{_rvkc_field_specifier_s})$")
_FP_TABLE = str.maketrans("dD", "eE", " ")


def _is_int(value) -> bool:
    return isinstance(value, int) or (type(value).__module__ == "numpy"
                                      and getattr(value, "dtype", None) is not None
                                      and value.dtype.kind in "iu")


def _is_numpy(value, kinds: str) -> bool:
    dt = getattr(value, "dtype", None)
    return type(value).__module__ == "numpy" and dt is not None and dt.kind in kinds


def _format_float(value) -> str:
    """astropy's ``_format_float``: ``str`` with an upper-case E, at most 20 characters."""
    value_str = str(value).replace("e", "E")
    if (str_len := len(value_str)) > 20:
        idx = value_str.find("E")
        if idx < 0:
            value_str = value_str[:20]
        else:
            value_str = value_str[: 20 - (str_len - idx)] + value_str[idx:]
    return value_str


def _format_value(value) -> str:
    """astropy's ``_format_value``: the value field of a freshly made card."""
    if isinstance(value, str):
        if value == "":
            return "''"
        exp_val_str = value.replace("'", "''")
        val_str = f"'{exp_val_str:8}'"
        return f"{val_str:20}"
    if isinstance(value, bool) or _is_numpy(value, "b"):
        return f"{repr(bool(value))[0]:>20}"
    if _is_int(value):
        return f"{value:>20d}"
    if isinstance(value, float) or _is_numpy(value, "f"):
        return f"{_format_float(value):>20}"
    if isinstance(value, complex) or _is_numpy(value, "c"):
        val_str = f"({_format_float(value.real)}, {_format_float(value.imag)})"
        return f"{val_str:>20}"
    return ""


def _words_group(s: str, width: int, first_width: int | None = None) -> list[str]:
    """astropy's ``_words_group`` (pieces of at most ``width`` characters, cut at blanks
    where possible), without numpy."""
    words = []
    slen = len(s)
    blank_loc = [i for i, ch in enumerate(s + " ") if ch == " "]
    current_width = width if first_width is None else first_width
    offset = 0
    xoffset = 0
    while True:
        limit = current_width + offset
        loc = next((k for k, b in enumerate(blank_loc) if b >= limit), len(blank_loc))
        offset = blank_loc[loc - 1] + 1 if loc > 0 else -1
        if offset <= xoffset:
            offset = min(xoffset + current_width, slen)
        words.append(s[xoffset:offset])
        if offset >= slen:
            break
        xoffset = offset
        current_width = width
    return words


def _normalize_keyword(keyword: str) -> str:
    """The lookup form of a keyword: upper case, without a ``HIERARCH`` prefix."""
    if len(keyword) <= KEYWORD_LENGTH and _keywd_FSC_RE.match(keyword):
        return keyword
    if len(keyword) > 9 and keyword[:9].upper() == "HIERARCH ":
        return keyword[9:].strip().upper()
    return keyword.strip().upper()


class Card:
    """One header card: ``keyword``, ``value``, ``comment`` (astropy's ``Card`` subset).

    Long keywords (more than 8 characters or outside ``A-Z0-9_-``) become HIERARCH
    cards, silently (astropy warns). ``image`` is the card as written, 80 characters,
    or a multiple of 80 for CONTINUE long strings and long commentary text.
    """

    __slots__ = ("_keyword", "_value", "_comment", "_hierarch", "_image")

    def __init__(self, keyword: str = "", value: Any = None, comment: str | None = None):
        self._hierarch = False
        self._image = None  # the image read from a file, until the card is modified
        self._keyword = self._check_keyword(keyword if keyword is not None else "")
        self._value = UNDEFINED if value is None else self._check_value(value)
        if self._keyword in _COMMENTARY and self._value is UNDEFINED:
            self._value = ""
        self._comment = self._check_comment(comment)

    # -- validation, as astropy's setters -------------------------------------------
    def _check_keyword(self, keyword: str) -> str:
        if not isinstance(keyword, str):
            raise ValueError(f"Keyword name {keyword!r} is not a string.")
        keyword = keyword.rstrip()
        upper = keyword.upper()
        if len(keyword) <= KEYWORD_LENGTH and _keywd_FSC_RE.match(upper):
            if upper == "END":
                raise ValueError("Keyword 'END' not allowed.")
            return upper
        if _keywd_hierarch_RE.match(keyword):
            self._hierarch = True
            return keyword[9:].strip() if upper[:9] == "HIERARCH " else keyword
        raise ValueError(f"Illegal keyword name: {keyword!r}.")

    @staticmethod
    def _check_value(value):
        if _is_numpy(value, "b"):
            return bool(value)
        if not (isinstance(value, (str, int, float, complex, _Undefined))
                or _is_numpy(value, "iufc")):
            if type(value).__name__ == "Undefined":  # astropy's UNDEFINED
                return UNDEFINED
            raise ValueError(f"Illegal value: {value!r}.")
        if (isinstance(value, float) or _is_numpy(value, "f")) and (
                value != value or value in (float("inf"), float("-inf"))):
            raise ValueError(f"Floating point {value!r} values are not allowed in FITS "
                             "headers.")
        if isinstance(value, str) and not _ascii_text_re.match(value):
            raise ValueError("FITS header values must contain standard printable ASCII "
                             f"characters; {value!r} contains characters not representable "
                             "in ASCII or non-printable characters.")
        return value

    @staticmethod
    def _check_comment(comment) -> str:
        if comment is None:
            return ""
        if isinstance(comment, str) and not _ascii_text_re.match(comment):
            raise ValueError("FITS header comments must contain standard printable ASCII "
                             f"characters; {comment!r} contains characters not representable "
                             "in ASCII or non-printable characters.")
        return comment

    # -- the astropy Card interface --------------------------------------------------
    @property
    def keyword(self) -> str:
        return self._keyword

    @property
    def value(self):
        v = self._value
        return v.rstrip() if isinstance(v, str) else v

    @value.setter
    def value(self, value) -> None:
        self._value = UNDEFINED if value is None else self._check_value(value)
        self._image = None

    @property
    def comment(self) -> str:
        return self._comment.rstrip() if isinstance(self._comment, str) else self._comment

    @comment.setter
    def comment(self, comment) -> None:
        self._comment = self._check_comment(comment)
        self._image = None

    @property
    def is_blank(self) -> bool:
        return not self._keyword and self._value == "" and not self._comment

    def __repr__(self) -> str:
        return repr((self.keyword, self.value, self.comment))

    def __str__(self) -> str:
        return self.image

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index):
        return (self.keyword, self.value, self.comment)[index]

    def __iter__(self):
        return iter((self.keyword, self.value, self.comment))

    def copy(self) -> "Card":
        new = Card.__new__(Card)
        new._keyword, new._value, new._comment = self._keyword, self._value, self._comment
        new._hierarch, new._image = self._hierarch, self._image
        return new

    def __reduce__(self):
        return (_make_card, (self._keyword, self._value, self._comment, self._hierarch,
                             self._image))

    @classmethod
    def fromstring(cls, image: str) -> "Card":
        """Parse one card image (80 characters, or more with CONTINUE cards)."""
        if isinstance(image, bytes):
            image = image.decode("latin1")
        image = image.ljust(max(CARD_LENGTH, len(image) + (-len(image) % CARD_LENGTH)))
        return _parse_card([image[i:i + CARD_LENGTH] for i in range(0, len(image), CARD_LENGTH)])

    # -- formatting, as astropy's _format_image for a card made from values ----------
    def _format_keyword(self) -> str:
        if self._keyword:
            if self._hierarch:
                return f"HIERARCH {self._keyword} "
            return f"{self._keyword:8}"
        return " " * KEYWORD_LENGTH

    @property
    def image(self) -> str:
        if self._image is not None:
            return self._image
        keyword = self._format_keyword()
        is_commentary = self._keyword in _COMMENTARY
        if is_commentary:
            value = str(self._value)
            comment = ""
            delimiter = ""
        else:
            value = _format_value(self._value)
            if len(self._keyword) > KEYWORD_LENGTH:
                value = value.strip()
            comment = f" / {self._comment}" if self.comment else ""
            delimiter = "= "
        output = f"{keyword}{delimiter}{value}{comment}"
        kv_len = len(keyword) + len(delimiter) + len(value)
        if kv_len == CARD_LENGTH + 1 and keyword.startswith("HIERARCH") and keyword[-1] == " ":
            output = "".join([keyword[:-1], delimiter, value, comment])
        if len(output) <= CARD_LENGTH:
            return f"{output:80}"
        if is_commentary:
            maxlen = CARD_LENGTH - KEYWORD_LENGTH
            return "".join(f"{keyword}{value[i:i + maxlen]}".ljust(CARD_LENGTH)
                           for i in range(0, len(value), maxlen))
        if isinstance(self._value, str) and len(value) > (CARD_LENGTH - len(keyword) - 2):
            return self._format_long_image()
        return output[:CARD_LENGTH]  # astropy truncates the comment (with a warning)

    def _format_long_image(self) -> str:
        value_length, comment_length = 67, 64
        headstr = self._format_keyword() + "= "
        first_value_length = value_length + KEYWORD_LENGTH + 2 - len(headstr)
        words = _words_group(self._value.replace("'", "''"), value_length, first_value_length)
        output = []
        for idx, word in enumerate(words):
            if idx > 0:
                headstr = "CONTINUE  "
            fmt = "'{}'" if not self.comment and idx == len(words) - 1 else "'{}&'"
            output.append(f"{headstr + fmt.format(word):80}")
        if self.comment:
            words = _words_group(self._comment, comment_length)
            for idx, word in enumerate(words):
                headstr = "CONTINUE  '' / " if idx == len(words) - 1 else "CONTINUE  '&' / "
                output.append(f"{headstr + word:80}")
        return "".join(output)


def _make_card(keyword, value, comment, hierarch, image=None) -> Card:
    card = Card.__new__(Card)
    card._keyword, card._value, card._comment, card._hierarch = keyword, value, comment, hierarch
    card._image = image
    return card


# --- parsing ----------------------------------------------------------------------
def _parse_value_comment(vc: str, keyword: str):
    """``(value, comment)`` of a value/comment field as astropy parses it."""
    m = _value_NFSC_RE.match(vc)
    if m is None:
        raise HeaderParseError(f"unparsable card {keyword!r}")
    if m.group("bool") is not None:
        value = m.group("bool") == "T"
    elif m.group("strg") is not None:
        value = re.sub("''", "'", m.group("strg"))
    elif m.group("numr") is not None:
        numr = _number_NFSC_RE.match(m.group("numr"))
        text = (numr.group("sign") or "") + numr.group("digt").translate(_FP_TABLE)
        try:
            value = int(text)
        except ValueError:
            value = float(text)
    elif m.group("cplx") is not None:
        raise HeaderParseError(f"complex value of {keyword!r}")  # rare: astropy reads it
    else:
        value = UNDEFINED
    comment = m.group("comm").rstrip() if m.group("comm") else ""
    return value, comment


def _split_std(image: str) -> tuple[str, str, bool]:
    """``(keyword, value/comment field, hierarch)`` of one non-commentary card image."""
    kw8 = image[:KEYWORD_LENGTH].strip()
    upper = kw8.upper()
    if upper == "HIERARCH" and image[8] == " " and "=" in image:
        key, vc = image.split("=", 1)
        return key[9:].strip(), vc.strip(), True
    idx = image.find("= ")
    if idx != KEYWORD_LENGTH:
        raise HeaderParseError(f"card {image[:10]!r}: no value indicator in column 9")
    if kw8 != upper or not _keywd_FSC_RE.match(upper):
        raise HeaderParseError(f"non-standard keyword {kw8!r}")
    vc = image[10:].strip()
    if vc[:1] == "'" and vc.find(": ") >= 2 and _rvkc_keyword_val_comm_RE.match(vc):
        raise HeaderParseError(f"record-valued keyword {kw8!r}")
    return upper, vc, False


def _parse_card(images: list[str]) -> Card:
    """A card from its 80-character image(s); more than one: CONTINUE cards."""
    image = images[0]
    upper = image[:KEYWORD_LENGTH].strip().upper()
    if upper in _COMMENTARY:
        if len(images) > 1:
            raise HeaderParseError("CONTINUE after a commentary card")
        return _make_card(upper, image[KEYWORD_LENGTH:].rstrip(), "", False, image)
    if upper in ("END", "CONTINUE"):
        raise HeaderParseError(f"unexpected {upper} card")
    keyword, vc, hierarch = _split_std(image)
    if len(images) == 1:
        value, comment = _parse_value_comment(vc, keyword)
        return _make_card(keyword, value, comment, hierarch, image)
    # CONTINUE long string (astropy's Card._split over _itersubcards)
    values, comments = [], []
    for k, sub in enumerate(images):
        svc = vc if k == 0 else sub.split(" ", 1)[1].strip()
        m = _strg_comment_RE.match(svc)
        if not m or (k == 0 and m.group("strg") is None):
            raise HeaderParseError(f"CONTINUE card of {keyword!r} without a string")
        value = (m.group("strg") or "").rstrip()
        if value and value[-1] == "&":
            value = value[:-1]
        values.append(value)
        if m.group("comm"):
            comments.append(m.group("comm").rstrip())
    value, comment = _parse_value_comment(f"'{''.join(values)}' / {' '.join(comments)}",
                                          keyword)
    if not isinstance(value, str):
        raise HeaderParseError(f"CONTINUE card of {keyword!r} without a string")
    return _make_card(keyword, value, comment, hierarch, "".join(images))


def parse_cards(text: str) -> tuple[list[Card], bool]:
    """Cards of header ``text`` (80-character images, printable ASCII) up to END.

    Returns ``(cards, found_end)``. Raises :class:`HeaderParseError` for anything this
    module would not read as astropy does (the caller lets astropy read the file)."""
    cards: list[Card] = []
    pending: list[str] = []
    n = len(text) - len(text) % CARD_LENGTH
    for i in range(0, n, CARD_LENGTH):
        img = text[i:i + CARD_LENGTH]
        if pending and img[:8] == "CONTINUE":
            pending.append(img)
            continue
        if pending:
            cards.append(_parse_card(pending))
        if img == _END_CARD:
            return cards, True
        pending = [img]
    if pending:
        cards.append(_parse_card(pending))
    return cards, False


# --- the header ---------------------------------------------------------------------
class _Comments:
    """``header.comments[key]`` (get and set), as astropy's accessor."""

    def __init__(self, header: "Header") -> None:
        self._header = header

    def __getitem__(self, key):
        return self._header._cards[self._header._index_of(key)].comment

    def __setitem__(self, key, comment) -> None:
        self._header._cards[self._header._index_of(key)].comment = comment

    def __iter__(self):
        return (c.comment for c in self._header._cards)

    def __len__(self) -> int:
        return len(self._header._cards)


class Header:
    """An ordered list of FITS cards with astropy ``Header``'s interface (subset).

    Keyword look-ups are case-insensitive; ``header[key]`` of COMMENT/HISTORY is the
    list of their texts; ``header[key] = (value, comment)`` updates the first card
    of ``key`` or appends a new one before trailing commentary cards, as astropy does.
    """

    def __init__(self, cards: Any = None) -> None:
        self._cards: list[Card] = []
        self._index: dict[str, list[int]] | None = None
        if cards is None:
            return
        if isinstance(cards, Header):
            self._cards = [c.copy() for c in cards._cards]
            return
        if hasattr(cards, "cards") and not isinstance(cards, (list, tuple)):
            cards = cards.cards
        elif isinstance(cards, dict):
            cards = cards.items()
        for card in cards:
            self.append(card, end=True)

    # -- conversion ----------------------------------------------------------------
    @classmethod
    def from_astropy(cls, header) -> "Header":
        """A :class:`Header` with the cards of an astropy header (invalid cards dropped)."""
        out = cls()
        for card in header.cards:
            try:
                out._cards.append(_as_card(card))
            except Exception:  # noqa: BLE001 - an unparsable card, as write_fits did
                continue
        return out

    def to_astropy(self):
        """The same cards as an :class:`astropy.io.fits.Header` (imports astropy)."""
        import warnings

        from astropy.io import fits
        from astropy.utils.exceptions import AstropyWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.Header.fromstring(self.tostring(endcard=False, padding=False))

    def __getattr__(self, name: str):
        # Anything astropy's Header has and this class does not: ask a converted copy
        # and copy the cards back after a call (the method may have modified them).
        if name.startswith("_"):
            raise AttributeError(name)
        ah = self.to_astropy()
        attr = getattr(ah, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            result = attr(*args, **kwargs)
            self._cards = Header.from_astropy(ah)._cards
            self._index = None
            return result

        return call

    def __reduce__(self):
        return (Header, (list(self._cards),))

    # -- index ------------------------------------------------------------------------
    def _keyword_indices(self) -> dict[str, list[int]]:
        if self._index is None:
            index: dict[str, list[int]] = {}
            for i, card in enumerate(self._cards):
                index.setdefault(card._keyword.upper(), []).append(i)
            self._index = index
        return self._index

    def _index_of(self, key) -> int:
        if isinstance(key, int):
            if key < -len(self._cards) or key >= len(self._cards):
                raise IndexError("list index out of range")
            return key % len(self._cards)
        n = 0
        if isinstance(key, tuple):
            key, n = key
        idx = self._keyword_indices().get(_normalize_keyword(key).upper())
        if not idx or n >= len(idx):
            raise KeyError(f"Keyword {key!r} not found.")
        return idx[n]

    # -- mapping interface ----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._cards)

    def __iter__(self) -> Iterator[str]:
        return (c.keyword for c in self._cards)

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            return _normalize_keyword(key).upper() in self._keyword_indices()
        try:
            self._index_of(key)
            return True
        except (KeyError, IndexError):
            return False

    def __getitem__(self, key):
        if isinstance(key, str):
            norm = _normalize_keyword(key).upper()
            if norm in _COMMENTARY:
                idx = self._keyword_indices().get(norm, [])
                if not idx:
                    raise KeyError(f"Keyword {key!r} not found.")
                return [self._cards[i].value for i in idx]
        if isinstance(key, slice):
            return Header(self._cards[key])
        value = self._cards[self._index_of(key)].value
        return None if value is UNDEFINED else value  # as astropy

    def __setitem__(self, key, value) -> None:
        comment = None
        if isinstance(value, tuple):
            if len(value) > 2:
                raise ValueError("A Header item may be set with either a scalar value, a "
                                 "1-tuple containing a scalar value, or a 2-tuple containing "
                                 "a scalar value and comment string.")
            value, comment = (value[0], None) if len(value) == 1 else value
        if isinstance(key, int):
            card = self._cards[self._index_of(key)]
            card.value = value
            if comment is not None:
                card.comment = comment
            return
        self._update(key, value, comment)

    def __delitem__(self, key) -> None:
        if isinstance(key, str) and not isinstance(key, tuple):
            norm = _normalize_keyword(key).upper()
            idx = self._keyword_indices().get(norm)
            if not idx:
                raise KeyError(f"Keyword {key!r} not found.")
            for i in reversed(idx):
                del self._cards[i]
        else:
            del self._cards[self._index_of(key)]
        self._index = None

    def __eq__(self, other) -> bool:
        return str(self) == str(other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.tostring()

    def __repr__(self) -> str:
        return self.tostring(sep="\n", endcard=False, padding=False)

    def get(self, key, default=None):
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def keys(self) -> Iterator[str]:
        return iter([c.keyword for c in self._cards])

    def values(self) -> Iterator[Any]:
        return iter([c.value for c in self._cards])

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter([(c.keyword, c.value) for c in self._cards])

    @property
    def cards(self) -> list[Card]:
        return list(self._cards)

    @property
    def comments(self) -> _Comments:
        return _Comments(self)

    def copy(self, strip: bool = False) -> "Header":
        out = Header(self)
        if strip:
            out.strip()
        return out

    __copy__ = copy

    def __deepcopy__(self, memo) -> "Header":
        return self.copy()

    def count(self, keyword: str) -> int:
        idx = self._keyword_indices().get(_normalize_keyword(keyword).upper())
        if idx is None:
            raise KeyError(f"Keyword {keyword!r} not found.")
        return len(idx)

    def index(self, keyword: str, start: int | None = None, stop: int | None = None) -> int:
        start = 0 if start is None else start
        stop = len(self._cards) if stop is None else stop
        norm = _normalize_keyword(keyword).upper()
        for i in range(start, stop, -1 if stop < start else 1):
            if self._cards[i]._keyword.upper() == norm:
                return i
        raise ValueError(f"The keyword {keyword!r} is not in the  header.")

    # -- modification ------------------------------------------------------------
    def _update(self, key: str, value, comment) -> None:
        norm = _normalize_keyword(key.strip()).upper() if isinstance(key, str) else key
        idx = self._keyword_indices().get(norm)
        if norm not in _COMMENTARY and idx:
            card = self._cards[idx[0]]
            card.value = value
            if comment is not None:
                card.comment = comment
        elif norm in _COMMENTARY:
            cards = self._split_commentary(norm, value)
            if idx:
                at = idx[-1] + 1
                self._cards[at:at] = cards
                self._index = None
            else:
                for c in cards:
                    self.append(c, bottom=True)
        else:
            self.append(Card(key, value, comment))

    @staticmethod
    def _split_commentary(keyword: str, value) -> list[Card]:
        maxlen = CARD_LENGTH - KEYWORD_LENGTH
        text = str(value if value is not None else "")
        if len(text) <= maxlen:
            return [Card(keyword, text)]
        return [Card(keyword, text[i:i + maxlen]) for i in range(0, len(text), maxlen)]

    def append(self, card=None, useblanks: bool = True, bottom: bool = False,
               end: bool = False) -> None:
        """Append a card (a :class:`Card`, an astropy Card, a ``(key, value[, comment])``
        tuple or a keyword) as astropy does: before trailing blank and, for a
        non-commentary card, commentary cards unless ``end``."""
        card = _as_card(card)
        if not end and card.is_blank:
            end = True
        if end:
            self._cards.append(card)
        else:
            i = len(self._cards) - 1
            while i >= 0 and self._cards[i].is_blank:
                i -= 1
            if not bottom and card._keyword not in _COMMENTARY:
                while i >= 0 and self._cards[i]._keyword in _COMMENTARY:
                    i -= 1
            self._cards.insert(i + 1, card)
        self._index = None

    def extend(self, cards, strip: bool = True, unique: bool = False, update: bool = False,
               update_first: bool = False, useblanks: bool = True, bottom: bool = False,
               end: bool = False) -> None:
        temp = Header(cards)
        if strip:
            temp.strip()
        if update_first or (unique and update):
            raise NotImplementedError  # pragma: no cover - handled by __getattr__ users
        for card in temp._cards:
            key = card._keyword
            if key not in _COMMENTARY:
                if unique and not update and key in self:
                    continue
                if update and key in self:
                    self[key] = (card.value, card.comment)
                    continue
            elif (unique or update) and key in self and not card.is_blank:
                if card.value in self[key]:
                    continue
            self.append(card, useblanks=useblanks, bottom=bottom, end=end)

    def insert(self, key, card, useblanks: bool = True, after: bool = False) -> None:
        idx = key if isinstance(key, int) else self._index_of(key)
        if after:
            idx = len(self._cards) if idx == -1 else idx + 1
        if idx >= len(self._cards):
            self.append(card, end=True)
            return
        self._cards.insert(idx, _as_card(card))
        self._index = None

    def set(self, keyword: str, value=None, comment=None, before=None, after=None) -> None:
        norm = _normalize_keyword(keyword).upper()
        if norm not in _COMMENTARY and norm in self:
            if comment is None:
                comment = self.comments[keyword]
            if value is None:
                value = self[keyword]
            self[keyword] = (value, comment)
            if before is not None or after is not None:
                card = self._cards.pop(self._index_of(keyword))
                self._index = None
                self._relative_insert(card, before, after)
        elif before is not None or after is not None:
            self._relative_insert(Card(keyword, value, comment), before, after)
        else:
            self[keyword] = (value, comment)

    def _relative_insert(self, card: Card, before, after) -> None:
        if before is not None:
            self.insert(before, card)
        else:
            self.insert(after, card, after=True)

    def update(self, *args, **kwargs) -> None:
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 arguments, got {len(args)}")
        other = args[0] if args else None
        if other is not None:
            if hasattr(other, "cards") and not isinstance(other, dict):
                items = [(c.keyword, c.value, c.comment) for c in other.cards]
            elif hasattr(other, "keys"):
                items = [(k, *(other[k] if isinstance(other[k], tuple) else (other[k],)))
                         for k in other.keys()]
            else:
                items = [tuple(c) for c in other]
            for item in items:
                key, value = item[0], item[1]
                comment = item[2] if len(item) > 2 else None
                self._update(key, value, comment)
        for key, value in kwargs.items():
            value, comment = (value if isinstance(value, tuple) else (value, None))
            self._update(key, value, comment)

    def remove(self, keyword: str, ignore_missing: bool = False,
               remove_all: bool = False) -> None:
        norm = _normalize_keyword(keyword).upper()
        idx = self._keyword_indices().get(norm)
        if not idx:
            if not ignore_missing:
                raise KeyError(f"Keyword '{keyword}' not found.")
            return
        for i in (reversed(idx) if remove_all else idx[:1]):
            del self._cards[i]
        self._index = None

    def pop(self, *args):
        if len(args) > 2:
            raise TypeError(f"Header.pop expected at most 2 arguments, got {len(args)}")
        key = args[0] if args else -1
        try:
            value = self[key]
        except (KeyError, IndexError):
            if len(args) == 2:
                return args[1]
            raise
        if isinstance(key, str):
            del self[key]
        else:
            del self._cards[self._index_of(key)]
            self._index = None
        return value

    def setdefault(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            self[key] = default
            return default

    def clear(self) -> None:
        self._cards = []
        self._index = None

    def add_history(self, value, before=None, after=None) -> None:
        self._add_commentary("HISTORY", value, before, after)

    def add_comment(self, value, before=None, after=None) -> None:
        self._add_commentary("COMMENT", value, before, after)

    def add_blank(self, value="", before=None, after=None) -> None:
        self._add_commentary("", value, before, after)

    def _add_commentary(self, key, value, before, after) -> None:
        if before is not None or after is not None:
            self._relative_insert(Card(key, value), before, after)
        else:
            self[key] = value

    def strip(self) -> None:
        """Remove the structural cards (SIMPLE, BITPIX, NAXISn, EXTEND, ...), as astropy."""
        naxis = self.get("NAXIS", 0)
        tfields = self.get("TFIELDS", 0)
        for i in range(naxis if isinstance(naxis, int) else 0):
            self.remove(f"NAXIS{i + 1}", ignore_missing=True)
        for name in ("TFORM", "TSCAL", "TZERO", "TNULL", "TTYPE", "TUNIT", "TDISP", "TDIM",
                     "THEAP", "TBCOL"):
            for i in range(tfields if isinstance(tfields, int) else 0):
                self.remove(name + str(i + 1), ignore_missing=True)
        for name in ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
                     "GROUPS", "THEAP", "TFIELDS", "EPOCH"):
            self.remove(name, ignore_missing=True)

    # -- text -------------------------------------------------------------------------
    def tostring(self, sep: str = "", endcard: bool = True, padding: bool = True) -> str:
        s = sep.join(c.image for c in self._cards)
        if endcard:
            s += sep + _END_CARD
        if padding:
            s += " " * (-len(s) % BLOCK_LENGTH)
        return s

    @classmethod
    def fromstring(cls, data: "str | bytes", sep: str = "") -> "Header":
        if isinstance(data, bytes):
            data = data.decode("latin1")
        if sep:
            data = "".join(line.ljust(CARD_LENGTH) for line in data.split(sep))
        cards, _ = parse_cards(data)
        out = cls()
        out._cards = cards
        return out


def _as_card(card) -> Card:
    if isinstance(card, Card):
        return card
    if isinstance(card, str):
        return Card(card)
    if isinstance(card, tuple):
        return Card(*card)
    if hasattr(card, "keyword") and hasattr(card, "value"):  # an astropy Card
        keyword = card.keyword
        out = Card("HIERARCH " + keyword if getattr(card, "_hierarch", False)
                   and not keyword.upper().startswith("HIERARCH ") else keyword,
                   card.value, card.comment)
        if keyword in _COMMENTARY:
            out._value = card.value
        return out
    return Card(*card)


def is_header(obj) -> bool:
    """True for a :class:`Header` or an :class:`astropy.io.fits.Header` (without
    importing astropy)."""
    if isinstance(obj, Header):
        return True
    fits = __import__("sys").modules.get("astropy.io.fits")
    return fits is not None and isinstance(obj, fits.Header)
