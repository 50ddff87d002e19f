"""Bytes to text for mail: charset labels as senders write them, and best-effort fallbacks.

Mail declares charsets that are wrong, unknown to Python, or narrower than the bytes
sent (GB2312 carrying GBK, ISO-2022-JP carrying Windows extensions, Latin-1 carrying
UTF-8). Labels map to the superset codec the way mail clients and browsers read them,
and every decode ends in text: a failed strict decode falls back and says so, never
raises. RFC 2047 encoded words are decoded here too, since they are the same problem
inside a header.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Callable
from functools import lru_cache

# Labels mapped to the codec that decodes what senders actually send under them.
_ALIASES: dict[str, str] = {
    # Chinese: GB2312 and GBK mail routinely contains characters only GB18030 has.
    "gb2312": "gb18030",
    "gb_2312": "gb18030",
    "gb_2312-80": "gb18030",
    "csgb2312": "gb18030",
    "euc-cn": "gb18030",
    "euccn": "gb18030",
    "x-euc-cn": "gb18030",
    "chinese": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "windows-936": "gb18030",
    "ms936": "gb18030",
    "gb18030": "gb18030",
    # Big5 as written in Taiwan and Hong Kong (HKSCS is the superset browsers use).
    "big5": "big5hkscs",
    "big-5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    # Thai: TIS-620 mail uses the Windows-874 extras (euro, quotes, no-break space).
    "tis-620": "cp874",
    "tis620": "cp874",
    "tis_620": "cp874",
    "iso-8859-11": "cp874",
    "iso8859-11": "cp874",
    "iso_8859-11": "cp874",
    "windows-874": "cp874",
    "x-windows-874": "cp874",
    "cp874": "cp874",
    "dos-874": "cp874",
    # Korean and Japanese Windows supersets.
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "euckr": "cp949",
    "windows-949": "cp949",
    "korean": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "csshiftjis": "cp932",
    # Western: ASCII and Latin-1 labels carry Windows-1252 in practice.
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    # Names Python does not know.
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "x-mac-roman": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "unicode-1-1-utf-8": "utf-8",
    "utf8mb4": "utf-8",
    "x-unicode20utf8": "utf-8",
}

# Labels that say "no idea" rather than naming a charset.
_UNKNOWN_LABELS = frozenset(
    {"unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default", "charset", "8bit", "binary"}
)

# Codecs that are not charsets even though Python can decode bytes with them.
_REFUSED = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "charmap"})

# Codecs whose bytes are not ASCII-transparent: pure-ASCII input still needs the codec.
_NOT_ASCII_SAFE = ("utf-16", "utf-32", "utf-7", "iso2022", "hz")

# Wider codecs tried when the declared one rejects the bytes.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "big5hkscs": ("cp950",),
    "euc_jp": ("euc_jis_2004", "cp932"),
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2004"),
    "iso2022_jp_1": ("iso2022_jp_2", "iso2022_jp_2004"),
    "iso2022_jp_2": ("iso2022_jp_2004",),
    "koi8-r": ("koi8-u",),
    "cp949": ("iso2022_kr",),
}

_LATIN = "cp1252"
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")


@lru_cache(maxsize=1024)
def normalize_charset(label: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when unusable or unknown."""
    if not label:
        return None
    text = label.strip().strip("\"'").strip().lower()
    text = text.partition("*")[0]  # RFC 2231 language suffix: utf-8*en
    if not text or text in _UNKNOWN_LABELS or len(text) > 64:
        return None
    if text in _ALIASES:
        return _ALIASES[text]
    try:
        info = codecs.lookup(text)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return _ALIASES.get(info.name, info.name)


def _ascii_safe(codec: str) -> bool:
    return not codec.startswith(_NOT_ASCII_SAFE)


@lru_cache(maxsize=256)
def _incremental(codec: str) -> Callable[[str], codecs.IncrementalDecoder]:
    return codecs.getincrementaldecoder(codec)


def _strict(data: bytes, codec: str, final: bool) -> str | None:
    """Decode or return None; `final=False` tolerates a multibyte character cut at the end."""
    try:
        if final:
            return data.decode(codec)
        return _incremental(codec)("strict").decode(data, final=False)
    except (UnicodeError, LookupError, ValueError):
        return None


def _lenient(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError):
        return data.decode("latin-1")


def _latin_or_raw(data: bytes, final: bool) -> str:
    text = _strict(data, _LATIN, final)
    # Windows-1252 leaves five bytes undefined; Latin-1 maps every byte.
    return text if text is not None else data.decode("latin-1")


# ISO-2022-JP as Windows writes it (CP50220): NEC and IBM rows Python's codecs reject.
_JIS_SHIFT = re.compile(rb"(\x1b\$[@B]|\x1b\([BJI]|\x0e|\x0f)")


def _jis_pair_to_sjis(first: int, second: int) -> bytes:
    lead = ((first - 0x21) >> 1) + 0x81
    if lead > 0x9F:
        lead += 0x40
    if first & 1:
        trail = second + 0x1F
        if trail >= 0x7F:
            trail += 1
    else:
        trail = second + 0x7E
    return bytes((lead, trail))


def _iso2022jp_via_cp932(data: bytes) -> str | None:
    """Transcode JIS escapes to Shift_JIS and read it as CP932, which has the extensions."""
    out = bytearray()
    mode = b"ascii"
    for chunk in _JIS_SHIFT.split(data):
        if chunk in (b"\x1b$@", b"\x1b$B"):
            mode = b"double"
        elif chunk in (b"\x1b(B", b"\x1b(J", b"\x0f"):
            mode = b"ascii"
        elif chunk in (b"\x1b(I", b"\x0e"):
            mode = b"kana"
        elif mode == b"double":
            for index in range(0, len(chunk) - 1, 2):
                first, second = chunk[index], chunk[index + 1]
                if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
                    return None
                out += _jis_pair_to_sjis(first, second)
        elif mode == b"kana":
            out += bytes(byte + 0x80 if 0x21 <= byte <= 0x5F else byte for byte in chunk)
        else:
            out += chunk
    return _strict(bytes(out), "cp932", True)


def decode_text(data: bytes, label: str | None, *, final: bool = True) -> tuple[str, str | None]:
    """Text of `data` declared as `label`, and a defect note when the declaration did not fit.

    `final=False` means `data` was cut short, so a trailing partial character is dropped
    rather than taken as proof of a wrong charset.
    """
    codec = normalize_charset(label)
    note = f"unknown charset {label[:40]!r}" if label and label.strip() and codec is None else None
    if data.isascii() and (codec is None or _ascii_safe(codec)):
        return data.decode("ascii"), note
    if codec is None or codec == _LATIN:
        # UTF-8 mislabelled as Latin-1/ASCII is common; real Latin-1 text is almost never valid UTF-8.
        text = _strict(data, "utf-8", final)
        return (text if text is not None else _latin_or_raw(data, final)), note
    for candidate in (codec, *_SUPERSETS.get(codec, ())):
        text = _strict(data, candidate, final)
        if text is not None:
            return text, note
    if codec.startswith("iso2022_jp"):
        text = _iso2022jp_via_cp932(data)
        if text is not None:
            return text, note
    if codec == "utf-8":
        if _UTF8_MULTIBYTE.search(data):
            return _lenient(data, "utf-8"), "invalid utf-8 bytes replaced"
        return _latin_or_raw(data, final), "not utf-8 as declared; read as windows-1252"
    text = _strict(data, "utf-8", final)
    if text is not None:
        return text, f"not {codec} as declared; read as utf-8"
    return _lenient(data, codec), f"invalid {codec} bytes replaced"


def decode_header_bytes(data: bytes, hint: str | None = None) -> tuple[str, str | None]:
    """Raw 8-bit header bytes: UTF-8 (RFC 6532) first, then the body's charset, then Windows-1252."""
    text = _strict(data, "utf-8", True)
    if text is not None:
        return text, None
    codec = normalize_charset(hint)
    if codec is not None and codec not in ("utf-8", _LATIN):
        text = _strict(data, codec, True)
        if text is not None:
            return text, f"raw 8-bit header read as {codec}"
    return _latin_or_raw(data, True), "raw 8-bit header read as windows-1252"


def _to_bytes(value: str) -> bytes:
    """The original bytes of parser text: surrogate escapes back to bytes, real text as UTF-8."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _unescape_raw(value: str, hint: str | None, notes: list[str]) -> str:
    """Header text from the parser keeps raw 8-bit bytes as surrogate escapes; decode them."""
    if value.isascii():
        return value
    text, note = decode_header_bytes(_to_bytes(value), hint)
    if note:
        notes.append(note)
    return text


# RFC 2047 encoded word; charset may be missing or wrong, text is any run without '?'/space.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{0,75}+)\?([QqBb])\?([^?\s]*+)\?=")


def _word_bytes(encoding: str, payload: str, notes: list[str]) -> bytes:
    raw = _to_bytes(payload)
    if encoding in "Qq":
        return binascii.a2b_qp(raw, header=True)
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        notes.append("bad base64 in encoded word")
        usable = raw.rstrip(b"=")
        usable = usable[: len(usable) - len(usable) % 4]
        try:
            return binascii.a2b_base64(usable)
        except binascii.Error:
            return b""


def decode_words(value: str, hint: str | None = None) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words and raw 8-bit bytes in a header value; notes list defects.

    Adjacent words in the same charset are joined as bytes before decoding, because
    senders split multibyte characters across words.
    """
    notes: list[str] = []
    if "=?" not in value:
        return _unescape_raw(value, hint, notes), notes
    out: list[str] = []
    pending: list[bytes] = []
    pending_label: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_label
        if pending:
            text, note = decode_text(b"".join(pending), pending_label or None)
            if note:
                notes.append(f"encoded word: {note}")
            if not pending_label:
                notes.append("encoded word without charset")
            out.append(text)
        pending = []
        pending_label = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        if gap and not (pending and gap.isspace()):
            flush()
            out.append(_unescape_raw(gap, hint, notes))
        label = match.group(1)
        if pending and label.lower() != (pending_label or "").lower():
            flush()
        pending.append(_word_bytes(match.group(2), match.group(3), notes))
        pending_label = label
        position = match.end()
    flush()
    out.append(_unescape_raw(value[position:], hint, notes))
    return "".join(out), notes
