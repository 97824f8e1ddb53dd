"""Reading tool schemas the way people write them, and comparing argument values by what they mean.

Two halves, both used by :class:`~verifiers.toolcall.ToolCallRules`:

* :func:`tool_spec` reads a JSON-schema ``parameters`` object once (cached) into :class:`ParamSpec`\\ s: the
  type, the ``enum``, the default (the ``default`` key, or else a default stated in the description text:
  ``"default: 10"``, ``"Defaults to 'celsius'."``, ``"(optional, default 5)"``, ``"Default is false."``,
  typed by the property's schema and dropped when it does not fit), whether case is significant, whether
  an array is a set, and whether the value is a date or time.
* :func:`compare` compares two values under a property schema and returns :data:`SAME`, :data:`DIFFERENT`
  or :data:`UNSURE`, appending every relaxation it used to ``notes`` (``"case_folded:status"``...), so a
  verdict can say exactly why two different spellings were accepted.

Relaxations are **certain** (they cannot change what the call does: a schema default filled in, ``5`` vs
``5.0``, a ``uniqueItems`` list reordered) or **heuristic** (likely but refutable by running the call: a
default read from prose, ``"5"`` for a number, ``"true"`` for a boolean, case folded, a date in another
format, free text with high word overlap). :func:`is_certain` tells them apart: the tool-use cascade
accepts certain matches outright and lets execution confirm heuristic ones.

>>> spec = tool_spec({"type": "object", "properties": {"units": {"type": "string", "enum": ["metric", "imperial"],
...     "description": "Unit system. Defaults to metric."}}})
>>> spec.children["units"].default, spec.children["units"].default_source
('metric', 'description')
>>> notes = []
>>> compare("Metric", "metric", spec.children["units"], "units", notes), notes
(0, ['case_folded:units'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

SAME, DIFFERENT, UNSURE = 0, 1, 2

#: Relaxations that execution could refute; every other relaxation is certain.
HEURISTIC = frozenset({"default_from_description", "number_from_string", "bool_from_string", "case_folded",
                       "date_normalised", "text_overlap", "order_ignored_by_description"})

_MISSING: Any = object()

# -- reading schemas ---------------------------------------------------------------------------------

# A default stated in prose. An explicit separator (":", "=", "is", "to", "of", "value is") may be followed
# by any literal; a bare "default X" only by a literal that ends the phrase ("(optional, default 5)").
# Every quantifier is bounded: descriptions come from users' schemas and must never cost more than linear time.
_DEFAULT_RE = re.compile(
    r"\b(?:by\s{1,3})?defaults?(?:\s{1,3}value)?(?P<sep>\s{0,3}[:=]\s{0,3}|\s{1,3}(?:is|to|of|=)\s{1,3}|\s{1,3})"
    r"(?P<v>\"[^\"\n]{0,80}\"|'[^'\n]{0,80}'|`[^`\n]{0,80}`|[-+]?\d{1,15}(?:\.\d{1,15})?(?!\w|\.\d)"
    r"|[A-Za-z_][\w-]{0,40}(?:\.[\w-]{1,40}){0,3}(?!\w))(?P<end>\s{0,3}(?:[).,;\]]|$|if\b|when\b|unless\b|for\b))?",
    re.IGNORECASE)
# Words that follow "defaults to" without being a value ("defaults to the current date").
_NOT_A_VALUE = frozenset(
    "a an the this that these those current currently today now none null nil empty unset all any same "
    "user user's your their its his her value values setting settings system server whatever blank "
    "is to of as in on be if when unless".split())
_ORDER_FREE_RE = re.compile(r"\b(?:order\s+(?:does\s+not|doesn't|is\s+not|isn't)\s+(?:matter|significant)"
                            r"|in\s+any\s+order|unordered|order\s+is\s+ignored)\b", re.IGNORECASE)
_CASE_FREE_RE = re.compile(r"\bcase[- ]insensitive\b|\b(?:iata|icao|iso\s{0,2}\d{3,5}|currency|country|airport|"
                           r"ticker|stock)\s{0,2}(?:code|symbol)s?\b|\bidentifier\b", re.IGNORECASE)
# Parameter names whose values are identifiers or codes: case-insensitive in practice.
_ID_NAME_RE = re.compile(
    r"(?:^|_)(?:id|ids|code|codes|sku|symbol|ticker|currency|country|iata|icao|airport|unit|units|status|type|"
    r"category|kind|mode|sort|sort_by|order_by|lang|language|locale|region|state|timezone|tz|format|level|"
    r"priority|gender|method|channel|cabin|class)$|(?<=[a-z])(?:Id|Ids|Code)$")
# Names where case always matters: secrets, paths, addresses of resources, content. Matched on the
# name's parts ("new_password", "filePath"), so "description" is not "script" and "passengers" not "pass".
_SENSITIVE_PARTS = frozenset("password passwd passphrase passcode pass pin secret token key apikey hash signature "
                             "cipher path paths file filename filepath dir directory folder url uri link href "
                             "content contents body text html markdown regex pattern command cmd script code_snippet "
                             "snippet source".split())
_PART_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _sensitive(name: str) -> bool:
    parts = [p.lower() for p in _PART_RE.findall(name)]
    return any(p in _SENSITIVE_PARTS for p in parts) or any(w in name.lower() for w in ("password", "secret", "token"))


@dataclass(frozen=True)
class ParamSpec:
    """What a schema says about one parameter.

    Attributes:
        name: The parameter name (last path component).
        schema: The property's own schema (``{}`` when unknown).
        type: The JSON type the schema names (the first non-null one of a list), or None.
        enum: The allowed values, or None.
        default: The default value, or ``_MISSING``.
        default_source: ``"schema"`` (a ``default`` key) or ``"description"`` (read from the prose).
        casefold: Short strings compare case-insensitively (an enum, an email, an id/code name, or a
            description that says "case-insensitive", "IATA code", "ISO 4217 code", "identifier"), never
            for secrets and paths.
        sensitive: Case always matters (passwords, tokens, paths, URLs, free content).
        unordered: ``"schema"`` (``uniqueItems``), ``"option"`` (the verifier was told), ``"description"``
            ("in any order") or None for an ordered list.
        temporal: ``"date"``, ``"date-time"`` or ``"time"`` when the schema's ``format`` says so.
    """

    name: str
    schema: dict[str, Any]
    type: str | None = None
    enum: tuple[Any, ...] | None = None
    default: Any = _MISSING
    default_source: str | None = None
    casefold: bool = False
    sensitive: bool = False
    unordered: str | None = None
    temporal: str | None = None
    children: dict[str, ParamSpec] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    items: ParamSpec | None = None


def _schema_type(schema: dict[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None and isinstance(schema.get("enum"), list) and schema["enum"]:
        first = schema["enum"][0]
        t = "string" if isinstance(first, str) else None
    return t if isinstance(t, str) else None


def description_default(description: str, ptype: str | None, enum: tuple[Any, ...] | None) -> Any:
    """The default a description states for a parameter of type ``ptype``, or ``_MISSING``.

    >>> description_default("Max results (optional, default 20).", "integer", None)
    20
    >>> description_default("Sort direction; defaults to the creation time.", "string", None) is _MISSING
    True
    """
    for m in _DEFAULT_RE.finditer(description[:2000]):
        raw, sep = m.group("v"), m.group("sep")
        quoted = raw[:1] in "\"'`"
        explicit = bool(sep.strip())
        if not explicit and m.group("end") is None:
            continue  # "default page size is 20": "page" is not a value
        value = _typed_default(raw[1:-1] if quoted else raw, quoted, ptype, enum, bare_needs_end=m.group("end") is None)
        if value is not _MISSING:
            return value
    return _MISSING


def _typed_default(text: str, quoted: bool, ptype: str | None, enum: tuple[Any, ...] | None, *,
                   bare_needs_end: bool) -> Any:
    low = text.strip().lower()
    if low in ("none", "null", "nil", ""):
        return _MISSING  # "default: none" means absent, which omitting already says
    if enum:
        for e in enum:
            if isinstance(e, str) and e.lower() == low or (not isinstance(e, (str, bool)) and str(e) == low):
                return e
        return _MISSING
    if ptype in ("integer", "number"):
        number = _as_number(text)
        if number is None or (ptype == "integer" and number != int(number)):
            return _MISSING
        return int(number) if ptype == "integer" else number
    if ptype == "boolean":
        return {"true": True, "false": False, "yes": True, "no": False}.get(low, _MISSING)
    if ptype not in (None, "string"):
        return _MISSING
    if quoted:
        return text
    if low in _NOT_A_VALUE or bare_needs_end and not re.fullmatch(r"[-+]?\d+(?:\.\d+)?", low):
        return _MISSING
    return text.rstrip(".") if ptype == "string" else _MISSING


_SPEC_CACHE: dict[int, tuple[dict[str, Any], ParamSpec]] = {}


def param_spec(name: str, schema: dict[str, Any] | None, *, required: bool = False) -> ParamSpec:
    """Read one property schema (recursively for objects and arrays)."""
    schema = schema if isinstance(schema, dict) else {}
    ptype = _schema_type(schema)
    enum = tuple(schema["enum"]) if isinstance(schema.get("enum"), list) else None
    description = schema.get("description") if isinstance(schema.get("description"), str) else ""
    default, source = _MISSING, None
    if not required:
        if "default" in schema:
            default, source = schema["default"], "schema"
        elif description:
            default = description_default(description, ptype, enum)
            source = "description" if default is not _MISSING else None
    sensitive = _sensitive(name) and not _ID_NAME_RE.search(name)
    casefold = not sensitive and (bool(enum) or schema.get("format") == "email" or bool(_ID_NAME_RE.search(name))
                                  or bool(description and _CASE_FREE_RE.search(description)))
    unordered = None
    if ptype == "array":
        if schema.get("uniqueItems") is True:
            unordered = "schema"
        elif description and _ORDER_FREE_RE.search(description):
            unordered = "description"
    fmt = schema.get("format")
    temporal = fmt if fmt in ("date", "date-time", "time") else None
    children: dict[str, ParamSpec] = {}
    req: frozenset[str] = frozenset()
    if ptype == "object" or isinstance(schema.get("properties"), dict):
        req = frozenset(r for r in schema.get("required") or () if isinstance(r, str))
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        children = {k: param_spec(k, v, required=k in req) for k, v in props.items() if isinstance(k, str)}
    items = None
    if isinstance(schema.get("items"), dict):
        items = param_spec(name, schema["items"], required=True)
    return ParamSpec(name, schema, ptype, enum, default, source, casefold, sensitive, unordered, temporal,
                     children, req, items)


def tool_spec(schema: dict[str, Any] | None) -> ParamSpec:
    """The parsed ``parameters`` schema of a tool, cached by identity (schemas are read once per run)."""
    if not isinstance(schema, dict):
        return ParamSpec("", {}, "object")
    hit = _SPEC_CACHE.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    spec = param_spec("", schema, required=True)
    if len(_SPEC_CACHE) > 4096:
        _SPEC_CACHE.clear()
    _SPEC_CACHE[id(schema)] = (schema, spec)  # the reference keeps the id from being reused
    return spec


def fill_defaults(arguments: dict[str, Any], spec: ParamSpec) -> tuple[dict[str, Any], dict[str, str]]:
    """``arguments`` with omitted optional parameters set to their defaults (and explicit nulls of optional
    parameters without one dropped), and ``{key: "schema" | "description" | "null"}`` for what changed."""
    out = dict(arguments)
    changed: dict[str, str] = {}
    for key, p in spec.children.items():
        if key in spec.required:
            continue
        if p.default is not _MISSING and (key not in out or out[key] is None):
            out[key] = p.default
            changed[key] = p.default_source or "schema"
        elif key in out and out[key] is None:
            del out[key]
            changed[key] = "null"
    return out, changed


# -- comparing values ----------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"\s{0,8}[-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,3})?\s{0,8}")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float is no number a tool takes
            return None
    if isinstance(value, str) and len(value) <= 80 and _NUMBER_RE.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


_MONTHS = {m: i for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], 1) for m in names}
_TIME = r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?\s?(?P<ampm>[ap]\.?m\.?)?"
_TZ = r"\s?(?P<tz>z|utc|gmt|[-+]\d{2}:?\d{2})?"
_DATE_FORMS = [
    re.compile(r"(?P<y>\d{4})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})"),
    re.compile(r"(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y>\d{4})"),
    re.compile(r"(?:[a-z]{3,9},?\s)?(?P<d>\d{1,2})(?:st|nd|rd|th)?\s(?P<mon>[a-z]{3,9})\.?,?\s(?P<y>\d{4})"),
    re.compile(r"(?:[a-z]{3,9},?\s)?(?P<mon>[a-z]{3,9})\.?\s(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s(?P<y>\d{4})"),
]
_DATETIME_SEP = r"(?:t|\s|,\s|\sat\s)"
_TEMPORAL_FORMS = ([(re.compile(f.pattern + _DATETIME_SEP + _TIME + _TZ), "date-time") for f in _DATE_FORMS]
                   + [(f, "date") for f in _DATE_FORMS] + [(re.compile(_TIME + _TZ), "time")])


def parse_temporal(text: str) -> tuple[str, tuple[str, ...]] | None:
    """``(kind, readings)``: a date, date-time or time in a common format as ISO strings, or None.

    More than one reading means the text is ambiguous (``03/05/2024``: March 5 or May 3).

    >>> parse_temporal("March 5, 2024"), parse_temporal("5/3/2024")
    (('date', ('2024-03-05',)), ('date', ('2024-05-03', '2024-03-05')))
    >>> parse_temporal("2:30 PM")
    ('time', ('14:30:00',))
    """
    s = " ".join(text.strip().lower().split())
    if not 4 <= len(s) <= 60 or not any(c.isdigit() for c in s):
        return None
    for form, kind in _TEMPORAL_FORMS:
        m = form.fullmatch(s)
        if m is None:
            continue
        g = m.groupdict()
        dates: list[str] = []
        if kind != "time":
            if g.get("mon") is not None:
                month = _MONTHS.get(g["mon"].rstrip("."))
                candidates = [(int(g["y"]), month, int(g["d"]))] if month else []
            elif g.get("a") is not None:
                a, b = int(g["a"]), int(g["b"])
                candidates = [(int(g["y"]), a, b), (int(g["y"]), b, a)] if a != b else [(int(g["y"]), a, b)]
            else:
                candidates = [(int(g["y"]), int(g["mo"]), int(g["d"]))]
            dates = [f"{y:04d}-{mo:02d}-{d:02d}" for y, mo, d in candidates if mo and _valid_date(y, mo, d)]
            if not dates:
                return None
        clock = ""
        if kind != "date":
            h, mi, sec = int(g["h"]), int(g["mi"]), int(g["s"] or 0)
            ampm = (g.get("ampm") or "").replace(".", "")
            if ampm:
                if not 1 <= h <= 12:
                    return None
                h = h % 12 + (12 if ampm == "pm" else 0)
            if h > 23 or mi > 59 or sec > 60:
                return None
            frac = (g.get("f") or "").rstrip("0")
            clock = f"{h:02d}:{mi:02d}:{sec:02d}" + (f".{frac}" if frac else "")
            tz = g.get("tz")
            if tz:
                clock += _offset(tz)
        if kind == "time":
            return kind, (clock,)
        return kind, tuple(f"{d}T{clock}" if clock else d for d in dates)
    return None


def _valid_date(y: int, mo: int, d: int) -> bool:
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return False
    days = [31, 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return d <= days[mo - 1]


def _offset(tz: str) -> str:
    if tz in ("z", "utc", "gmt"):
        return "+00:00"
    sign, digits = tz[0], tz[1:].replace(":", "")
    return f"{sign}{digits[:2]}:{digits[2:]}" if digits != "0000" else "+00:00"


def _same_instant(a: str, b: str) -> bool | None:
    """Two ISO date-times with offsets: True/False; None when either lacks an offset."""
    from datetime import datetime  # noqa: PLC0415 - only for the rare pair of zoned date-times

    try:
        da, db = datetime.fromisoformat(a), datetime.fromisoformat(b)
    except ValueError:
        return None
    if da.tzinfo is None or db.tzinfo is None:
        return None
    return da == db


def _compare_temporal(a: str, b: str) -> int | None:
    """SAME / DIFFERENT / UNSURE for two date-like strings; None when either is not one."""
    pa, pb = parse_temporal(a), parse_temporal(b)
    if pa is None or pb is None:
        return None
    (ka, ra), (kb, rb) = pa, pb
    if ka != kb:
        return UNSURE if ka != "time" and kb != "time" and {r[:10] for r in ra} & {r[:10] for r in rb} else DIFFERENT
    if len(ra) == 1 and len(rb) == 1:
        x, y = ra[0], rb[0]
        if x == y:
            return SAME
        if ka == "date-time":
            instant = _same_instant(x, y)
            if instant is not None:
                return SAME if instant else DIFFERENT
            # a zoned and a naive reading of the same wall-clock time: the zone may or may not matter
            return UNSURE if x[:19] == y[:19] else DIFFERENT
        if ka == "time" and x[:8] == y[:8]:
            return UNSURE
        return DIFFERENT
    return UNSURE if set(ra) & set(rb) else DIFFERENT  # ambiguous day/month order


_WS_RE = re.compile(r"\s+")
_ID_VALUE_RE = re.compile(r"[\w.:@+-]{1,64}")
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[.'@-][a-z0-9]+)*")


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def dice(a: str, b: str) -> float:
    """Dice coefficient of the token multisets of two texts (1.0 for two empty texts)."""
    ta, tb = tokens(a), tokens(b)
    if not ta and not tb:
        return 1.0
    counts: dict[str, int] = {}
    for t in tb:
        counts[t] = counts.get(t, 0) + 1
    common = 0
    for t in ta:
        if counts.get(t):
            counts[t] -= 1
            common += 1
    return 2 * common / (len(ta) + len(tb))


def _maybe_alias(a: str, b: str) -> bool:
    """Short strings that may name the same thing: an acronym ("NYC" / "New York City"), abbreviated words
    ("Main St" / "Main Street"), or one a word-subset of the other ("Paris" / "Paris, France")."""
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return False
    short, long_ = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
    if len(short) == 1 and len(long_) >= 2 and short[0] == "".join(w[0] for w in long_):
        return True
    if len(short) == len(long_) and all(x == y or x.isalpha() and y.isalpha() and (x.startswith(y) or y.startswith(x))
                                        for x, y in zip(ta, tb, strict=True)):
        return True
    return set(short) <= set(long_)


_NEGATIONS = frozenset("not no never none nor without don't doesn't didn't isn't aren't won't can't cannot "
                       "shouldn't except unless".split())


def _meaning_flip(a: str, b: str) -> bool:
    """Whether the words only one of two similar texts has include a negation or a number: the tokens a
    policy would add to turn an accepted paraphrase into the opposite instruction."""
    diff = set(tokens(a)) ^ set(tokens(b))
    return any(t in _NEGATIONS or any(c.isdigit() for c in t) for t in diff)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def coercible(a: Any, b: Any, p: ParamSpec) -> bool:
    """Whether values of different JSON types may still be compared (a string for a number or boolean
    the schema asks for)."""
    if p.type in ("integer", "number"):
        return _as_number(a) is not None and _as_number(b) is not None
    if p.type == "boolean":
        return all(isinstance(x, bool) or isinstance(x, str) and x.strip().lower() in ("true", "false") for x in (a, b))
    return False


def compare(a: Any, b: Any, p: ParamSpec, path: str, notes: list[str], *, text_threshold: float = 0.8,
            unsure_threshold: float = 0.5, rel_tol: float = 1e-6) -> int:
    """SAME, DIFFERENT or UNSURE for two values of the parameter ``p``; relaxations used go to ``notes``
    (only meaningful when the answer is SAME). ``path`` names the value in those notes."""
    if a is b or (type(a) is type(b) and not isinstance(a, (list, dict, float)) and a == b):
        return SAME
    kw = {"text_threshold": text_threshold, "unsure_threshold": unsure_threshold, "rel_tol": rel_tol}
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return SAME if a is b else DIFFERENT
        if p.type == "boolean" and coercible(a, b, p):
            same = _as_bool(a) is _as_bool(b)
            if same:
                notes.append(f"bool_from_string:{path}")
            return SAME if same else DIFFERENT
        return DIFFERENT
    na, nb = _as_number(a), _as_number(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) or (
            p.type in ("integer", "number") and na is not None and nb is not None):
        if na is None or nb is None:
            return DIFFERENT
        if not math.isclose(na, nb, rel_tol=rel_tol, abs_tol=rel_tol):
            return DIFFERENT
        if isinstance(a, str) or isinstance(b, str):
            notes.append(f"number_from_string:{path}")
        elif type(a) is not type(b):
            notes.append(f"number_format:{path}")
        return SAME
    if isinstance(a, str) and isinstance(b, str):
        return _compare_strings(a, b, p, path, notes, text_threshold, unsure_threshold)
    if isinstance(a, list) and isinstance(b, list):
        return _compare_lists(a, b, p, path, notes, kw)
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return DIFFERENT
        worst = SAME
        for k in a:
            child = p.children.get(k) or ParamSpec(k, {})
            r = compare(a[k], b[k], child, f"{path}.{k}", notes, **kw)
            if r == DIFFERENT:
                return DIFFERENT
            worst = max(worst, r)
        return worst
    return SAME if a == b else DIFFERENT


def _as_bool(x: Any) -> bool:
    return x if isinstance(x, bool) else x.strip().lower() == "true"


def _compare_strings(a: str, b: str, p: ParamSpec, path: str, notes: list[str], text_threshold: float,
                     unsure_threshold: float) -> int:
    sa, sb = _WS_RE.sub(" ", a).strip(), _WS_RE.sub(" ", b).strip()
    if sa == sb:
        return SAME
    if p.temporal or (sa[:1].isalnum() and sb[:1].isalnum()):
        verdict = _compare_temporal(sa, sb)
        if verdict is not None:
            if verdict == SAME:
                notes.append(f"date_normalised:{path}")
            return verdict
        if p.temporal:
            return UNSURE  # the schema says date, but one side is in no format we read
    if sa.casefold() == sb.casefold():
        if p.sensitive or "/" in sa or "\\" in sa:
            return DIFFERENT  # passwords, tokens, paths: case is part of the value
        if p.casefold and (p.enum or _ID_VALUE_RE.fullmatch(sa) or p.schema.get("format") == "email"):
            notes.append(f"case_folded:{path}")
            return SAME
        if len(sa.split()) >= 4:
            return DIFFERENT  # free text where the writer chose the case ("Hello World" in a message)
        return UNSURE  # a short name in another case ("paris"): an alias the judge or execution may settle
    if p.enum or p.sensitive:
        return DIFFERENT
    if p.casefold and _ID_VALUE_RE.fullmatch(sa) and _ID_VALUE_RE.fullmatch(sb):
        return DIFFERENT  # two different ids or codes
    words = max(sa.count(" "), sb.count(" ")) + 1
    if words >= 4:
        overlap = dice(sa, sb)
        if overlap >= text_threshold and _meaning_flip(sa, sb):
            return UNSURE  # "refund in full" vs "do not refund in full": high overlap, opposite meaning
        if overlap >= text_threshold:
            notes.append(f"text_overlap:{path}")
            return SAME
        return UNSURE if overlap >= unsure_threshold else DIFFERENT
    return UNSURE if _maybe_alias(sa, sb) else DIFFERENT


def _compare_lists(a: list[Any], b: list[Any], p: ParamSpec, path: str, notes: list[str], kw: dict[str, Any]) -> int:
    if len(a) != len(b):
        return DIFFERENT
    item = p.items or ParamSpec(p.name, {})
    scratch: list[str] = []
    results = [compare(x, y, item, f"{path}[]", scratch, **kw) for x, y in zip(a, b, strict=True)]
    if DIFFERENT not in results:
        notes.extend(scratch)
        return max(results, default=SAME)
    if not p.unordered:
        return DIFFERENT
    # A set: multiset matching of SAME pairs (Kuhn's augmenting paths; lists in tool calls are short).
    from verifiers.toolcall import max_matching  # noqa: PLC0415 - toolcall imports this module

    scratch = []
    cache: dict[tuple[int, int], int] = {}

    def same(i: int, j: int) -> bool:
        if (i, j) not in cache:
            cache[i, j] = compare(a[i], b[j], item, f"{path}[]", scratch, **kw)
        return cache[i, j] == SAME

    if len(max_matching(len(a), len(b), same)) == len(a):
        notes.extend(dict.fromkeys(scratch))
        notes.append(("order_ignored_by_description:" if p.unordered == "description" else "order_ignored:") + path)
        return SAME
    return UNSURE if UNSURE in cache.values() else DIFFERENT


def is_certain(relaxations: Collection[str]) -> bool:
    """True when none of ``relaxations`` is heuristic (see :data:`HEURISTIC`)."""
    return not any(r.partition(":")[0] in HEURISTIC for r in relaxations)
