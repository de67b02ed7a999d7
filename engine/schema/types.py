"""Type expressions of version files (``string``, ``id(users)``, ``"a" | "b"``, ...).

``parse_type`` turns one expression into a validator model and ``format_type`` writes the
canonical expression back, so that ``parse_type(format_type(v)) == v`` for every validator.
A hand-written recursive-descent parser (not a grammar library) keeps the error messages
precise: every ``TypeSyntaxError`` carries the 1-based column where reading stopped.

Grammar (whitespace is insignificant)::

    type     := member ("|" member)*
    member   := primary ("[" "]")*
    primary  := NAME                          string number float64 int64 bigint boolean
                                              bool null bytes any storage true false
              | "id" "(" TABLE ")"
              | "array" "(" type ")"
              | "record" "(" type "," type ")"
              | "nullable" "(" type ")"
              | "union" "(" [type ("," type)*] ")"
              | "literal" "(" LITERAL ")"
              | "optional" "(" type ")"       only as a whole field type
              | LITERAL                       "text" 'text' 42 -1.5 7n true false
              | "{" [key ["?"] ":" type ("," key ["?"] ":" type)*] "}"
              | "(" type ")"
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    BytesV,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    NullV,
    ObjectV,
    RecordV,
    StringV,
    UnionV,
)

__all__ = [
    "TYPE_NAMES",
    "TypeSyntaxError",
    "format_field_type",
    "format_type",
    "parse_field_type",
    "parse_type",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_SIMPLE: dict[str, Any] = {
    "string": StringV,
    "number": Float64V,
    "float64": Float64V,
    "int64": Int64V,
    "bigint": Int64V,
    "boolean": BooleanV,
    "bool": BooleanV,
    "null": NullV,
    "bytes": BytesV,
    "any": AnyV,
    # Files stay on the main deployment: a user table holds main's storage id as a string.
    "storage": StringV,
}
_CALLS = ("id", "array", "record", "nullable", "union", "literal", "optional")
TYPE_NAMES: tuple[str, ...] = tuple(sorted({*_SIMPLE, *_CALLS, "true", "false"}))
"""Every name the grammar knows (used for "did you mean" hints)."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?n?")
_PUNCT = "|[](){},:?"
_MAX_DEPTH = 100  # keeps absurd input a syntax error rather than a RecursionError


class TypeSyntaxError(ValueError):
    """A type expression cannot be read. ``column`` is 1-based; ``hint`` may suggest a fix."""

    def __init__(self, message: str, column: int, hint: str = ""):
        self.message = message
        self.column = column
        self.hint = hint
        super().__init__(f"{message} (column {column})")


@dataclass(frozen=True)
class _Tok:
    kind: str  # "name" | "string" | "number" | "punct" | "end"
    text: str
    value: Any
    col: int  # 1-based
    quote: str = ""


def _tokenize(expr: str) -> list[_Tok]:
    toks: list[_Tok] = []
    value: Any  # a literal's parsed value: str, int or float depending on the token
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        col = i + 1
        if ch in _PUNCT:
            toks.append(_Tok("punct", ch, ch, col))
            i += 1
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and expr[j] != ch:
                j += 2 if expr[j] == "\\" else 1
            if j >= n:
                raise TypeSyntaxError("unterminated string literal", col,
                                      f"close it with {ch}")
            raw = expr[i + 1:j]
            if ch == "'":
                raw = _single_to_json_body(raw)
            try:
                value = json.loads(f'"{raw}"', strict=False)
            except json.JSONDecodeError:
                raise TypeSyntaxError("invalid escape in string literal", col,
                                      'escapes follow JSON: \\" \\\\ \\n \\uXXXX') from None
            toks.append(_Tok("string", expr[i:j + 1], value, col, quote=ch))
            i = j + 1
            continue
        m = _NUMBER.match(expr, i)
        if m and (ch.isdigit() or ch in "-."):
            text = m.group(0)
            if text.endswith("n"):
                if any(c in text for c in ".eE"):
                    raise TypeSyntaxError(f"{text!r}: a bigint literal must be an integer", col)
                value = int(text[:-1])
                if not INT64_MIN <= value <= INT64_MAX:
                    raise TypeSyntaxError(f"{text!r} does not fit in int64", col)
            elif any(c in text for c in ".eE"):
                value = float(text)
                if not math.isfinite(value):
                    raise TypeSyntaxError(f"{text!r} is not a finite number", col)
            else:
                value = int(text)
            toks.append(_Tok("number", text, value, col))
            i = m.end()
            continue
        m = _IDENT.match(expr, i)
        if m:
            toks.append(_Tok("name", m.group(0), m.group(0), col))
            i = m.end()
            continue
        raise TypeSyntaxError(f"unexpected character {ch!r}", col)
    toks.append(_Tok("end", "", None, n + 1))
    return toks


def _single_to_json_body(raw: str) -> str:
    """The body of a single-quoted literal as the body of a JSON (double-quoted) string."""

    out: list[str] = []
    k = 0
    while k < len(raw):
        c = raw[k]
        if c == "\\" and k + 1 < len(raw):
            nxt = raw[k + 1]
            out.append("'" if nxt == "'" else c + nxt)
            k += 2
            continue
        out.append('\\"' if c == '"' else c)
        k += 1
    return "".join(out)


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), TYPE_NAMES, n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known types: " + ", ".join(TYPE_NAMES)


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.toks = _tokenize(expr)
        self.pos = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------
    @property
    def tok(self) -> _Tok:
        return self.toks[self.pos]

    def _is(self, text: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == text

    def _expect(self, text: str, what: str = "") -> _Tok:
        if not self._is(text):
            found = repr(self.tok.text) if self.tok.kind != "end" else "the end"
            raise TypeSyntaxError(f"expected {text!r}{what}, found {found}", self.tok.col)
        tok = self.tok
        self.pos += 1
        return tok

    def _fail_here(self, message: str, hint: str = "") -> TypeSyntaxError:
        return TypeSyntaxError(message, self.tok.col, hint)

    # -- grammar -------------------------------------------------------------------------
    def parse_field(self) -> FieldDef:
        """A whole field type: ``optional(T)`` is allowed here and only here."""

        if self.tok.kind == "name" and self.tok.text == "optional" and self._call_follows():
            start = self.pos
            self.pos += 2
            inner = self.parse_union()
            self._expect(")")
            if self.tok.kind == "end":
                return FieldDef(type=inner, optional=True)
            self.pos = start  # optional(...) used inside a larger expression: let it fail
        return FieldDef(type=self.parse_union())

    def parse_all(self, field: bool) -> Any:
        result = self.parse_field() if field else self.parse_union()
        if self.tok.kind != "end":
            raise self._fail_here(f"unexpected {self.tok.text!r} after a complete type",
                                  'combine types with "|", e.g. string | null')
        return result

    def _call_follows(self) -> bool:
        nxt = self.toks[self.pos + 1]
        return nxt.kind == "punct" and nxt.text == "("

    def parse_union(self) -> Any:
        members = [self.parse_member()]
        while self._is("|"):
            self.pos += 1
            members.append(self.parse_member())
        return members[0] if len(members) == 1 else UnionV(members=tuple(members))

    def parse_member(self) -> Any:
        node = self.parse_primary()
        while self._is("["):
            self.pos += 1
            self._expect("]", " (array types are written T[])")
            node = ArrayV(element=node)
        return node

    def parse_primary(self) -> Any:
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise self._fail_here(f"type nested more than {_MAX_DEPTH} levels deep")
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> Any:
        tok = self.tok
        if tok.kind == "end":
            raise self._fail_here("expected a type, found the end")
        if tok.kind == "string":
            self.pos += 1
            return LiteralV(value=tok.value)
        if tok.kind == "number":
            self.pos += 1
            if tok.text.endswith("n"):
                return LiteralV(value=tok.value, bigint=True)
            return LiteralV(value=tok.value)
        if tok.kind == "punct":
            if tok.text == "(":
                self.pos += 1
                inner = self.parse_union()
                self._expect(")", " to close the group")
                return inner
            if tok.text == "{":
                return self.parse_object()
            raise self._fail_here(f"expected a type, found {tok.text!r}")
        name = tok.text
        if name in ("true", "false"):
            self.pos += 1
            return LiteralV(value=name == "true")
        if self._call_follows() and name in _CALLS:
            return self.parse_call(name)
        if name in _SIMPLE:
            self.pos += 1
            return _SIMPLE[name]()
        if name in _CALLS:
            raise TypeSyntaxError(f"{name} needs arguments: {name}(...)", tok.col)
        raise TypeSyntaxError(f"unknown type {name!r}", tok.col, _did_you_mean(name))

    def parse_call(self, name: str) -> Any:
        start = self.tok
        self.pos += 2  # name and "("
        if name == "id":
            arg = self.tok
            if arg.kind not in ("name", "string"):
                raise self._fail_here("id(...) takes a table name, e.g. id(users)")
            self.pos += 1
            self._expect(")", " after the table name")
            return IdV(table=arg.value)
        if name == "literal":
            arg = self.tok
            if arg.kind in ("string", "number"):
                self.pos += 1
                lit = LiteralV(value=arg.value, bigint=arg.text.endswith("n")
                               if arg.kind == "number" else False)
            elif arg.kind == "name" and arg.text in ("true", "false"):
                self.pos += 1
                lit = LiteralV(value=arg.text == "true")
            else:
                raise self._fail_here(
                    "literal(...) takes a string, number, bigint or boolean",
                    'for example literal("draft"), literal(3), literal(7n), literal(true)')
            self._expect(")", " after the literal")
            return lit
        if name == "optional":
            raise TypeSyntaxError(
                "optional(T) is only allowed as a whole field type", start.col,
                "write the field as `name?: T` (or `name: optional(T)`); inside unions use "
                "nullable(T) or T | null")
        if name == "union":
            members = []
            if not self._is(")"):
                members.append(self.parse_union())
                while self._is(","):
                    self.pos += 1
                    members.append(self.parse_union())
            self._expect(")", " to close union(...)")
            return UnionV(members=tuple(members))
        first = self.parse_union()
        if name == "array":
            self._expect(")", " to close array(...)")
            return ArrayV(element=first)
        if name == "nullable":
            self._expect(")", " to close nullable(...)")
            return UnionV(members=(first, NullV()))
        # record(K, V)
        self._expect(",", " between the key and value types of record(K, V)")
        if self.tok.kind == "name" and self.tok.text == "optional" and self._call_follows():
            raise self._fail_here("record values cannot be optional",
                                  "use record(K, T | null) instead")
        values = self.parse_union()
        self._expect(")", " to close record(...)")
        return RecordV(keys=first, values=values)

    def parse_object(self) -> ObjectV:
        self._expect("{")
        fields: dict[str, FieldDef] = {}
        while not self._is("}"):
            key_tok = self.tok
            if key_tok.kind not in ("name", "string"):
                raise self._fail_here("expected a field name",
                                      "objects look like {a: string, b?: number}")
            self.pos += 1
            optional = False
            if self._is("?"):
                optional = True
                self.pos += 1
            self._expect(":", f" after field name {key_tok.value!r}")
            if key_tok.value in fields:
                raise TypeSyntaxError(f"duplicate field {key_tok.value!r} in object", key_tok.col)
            field = self.parse_field_in_object()
            fields[key_tok.value] = FieldDef(type=field.type, optional=optional or field.optional)
            if not self._is(","):
                break
            self.pos += 1
        self._expect("}", " to close the object")
        return ObjectV(fields=fields)

    def parse_field_in_object(self) -> FieldDef:
        if self.tok.kind == "name" and self.tok.text == "optional" and self._call_follows():
            self.pos += 2
            inner = self.parse_union()
            self._expect(")")
            return FieldDef(type=inner, optional=True)
        return FieldDef(type=self.parse_union())


def parse_type(expr: str) -> Any:
    """Parse one type expression into a validator; ``optional(T)`` is refused here."""

    if not isinstance(expr, str):
        raise TypeSyntaxError(f"a type expression must be a string, not {type(expr).__name__}", 1)
    return _Parser(expr).parse_all(field=False)


def parse_field_type(expr: str) -> FieldDef:
    """Parse a whole field type, where ``optional(T)`` is allowed at the top."""

    if not isinstance(expr, str):
        raise TypeSyntaxError(f"a type expression must be a string, not {type(expr).__name__}", 1)
    return _Parser(expr).parse_all(field=True)


# ---------------------------------------------------------------------------------------
# Formatting (canonical spelling)
# ---------------------------------------------------------------------------------------

def _name_or_quoted(name: str) -> str:
    return name if _IDENT.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _format_literal(v: LiteralV) -> str:
    value = v.value
    if v.bigint:
        return f"{int(value)}n"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _format_member(v: Any) -> str:
    """A type that can stand inside a union or before ``[]``."""

    text = format_type(v)
    if isinstance(v, UnionV) and len(v.members) >= 2:
        return f"({text})"
    return text


def format_type(v: Any) -> str:
    """The canonical expression of a validator (the inverse of ``parse_type``)."""

    if isinstance(v, LiteralV):
        return _format_literal(v)
    if isinstance(v, IdV):
        return f"id({_name_or_quoted(v.table)})"
    if isinstance(v, ArrayV):
        return f"{_format_member(v.element)}[]"
    if isinstance(v, RecordV):
        return f"record({format_type(v.keys)}, {format_type(v.values)})"
    if isinstance(v, UnionV):
        if len(v.members) < 2:
            return "union(" + ", ".join(format_type(m) for m in v.members) + ")"
        return " | ".join(_format_member(m) for m in v.members)
    if isinstance(v, ObjectV):
        parts = [
            f"{_name_or_quoted(k)}{'?' if f.optional else ''}: {format_type(f.type)}"
            for k, f in v.fields.items()
        ]
        return "{" + ", ".join(parts) + "}"
    simple = {
        StringV: "string", Float64V: "number", Int64V: "int64", BooleanV: "boolean",
        NullV: "null", BytesV: "bytes", AnyV: "any",
    }
    for cls, text in simple.items():
        if isinstance(v, cls):
            return text
    raise TypeError(f"not a validator: {v!r}")


def format_field_type(field: FieldDef) -> str:
    """A field's expression as written after ``name:`` (``optional(T)`` when optional)."""

    text = format_type(field.type)
    return f"optional({text})" if field.optional else text
