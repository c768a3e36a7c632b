"""The dataselect expression language, parsed safely (no ``eval``).

An expression is a boolean combination of comparisons between descriptor
names and literal values, written as Python would write it::

    exposure_time==5
    filter_name=='K-red' and not object=="FS 17"
    (observation_class=="science" and exposure_time==60.)

Grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    expression := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" or_expr ")" | operand (OP operand)*
    operand    := NAME | STRING | NUMBER | "-" NUMBER | True | False | None
    OP         := == | != | < | <= | > | >=

A lone descriptor name is true when its value is truthy; a chain such as
``1 < exposure_time <= 10`` means ``1 < exposure_time and exposure_time <= 10``.

:func:`parse` turns the text into an :class:`Expression` (a small tree of
frozen dataclasses); :meth:`Expression.evaluate` evaluates it against a frame,
or against anything with ``.descriptor(name, **kwargs)``.  Nothing in the text
can reach Python: the tokenizer accepts only the tokens above and the
evaluator only calls ``descriptor`` with a validated name.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .errors import ExpressionError

log = logging.getLogger(__name__)

#: relative tolerance of non-strict equality, per descriptor
RELATIVE_TOLERANCE = {"exposure_time": 0.01, "central_wavelength": 1e-5}
#: descriptors compared in their pretty form (no component IDs) when not strict
PRETTY_DESCRIPTORS = frozenset({"filter_name", "detector_name", "disperser"})
#: descriptors whose values are dates or times, and the parser of their literals
TEMPORAL_DESCRIPTORS = {"ut_date": "date", "ut_time": "time", "local_time": "time", "ut_datetime": "datetime"}

_OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
              ">": operator.gt, ">=": operator.ge}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_KEYWORDS = {"and", "or", "not", "True", "False", "None"}
_CONSTANTS = {"True": True, "False": False, "None": None}


class DescriptorProvider(Protocol):
    """What an expression is evaluated against: a frame, or anything alike."""

    def descriptor(self, name: str, **kwargs: Any) -> Any:
        """Value of descriptor ``name``."""


# ----------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Token:
    """One lexical token of an expression."""

    kind: str  # NAME, KEYWORD, NUMBER, STRING, OP, LPAREN, RPAREN, MINUS, END
    text: str
    pos: int  # 0-based index of the token's first character
    value: Any = None


_NUMBER = re.compile(r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACE = re.compile(r"\s+")


def _error(text: str, pos: int, problem: str) -> ExpressionError:
    where = "at the end" if pos >= len(text) else f"at position {pos + 1} ({text[pos]!r})"
    shown = text if len(text) <= 80 else f"{text[:77]}..."
    return ExpressionError(f"bad expression {shown!r}: {problem} {where}", position=pos)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; anything outside the language is an error.

    Raises
    ------
    ExpressionError
        An unexpected character or an unterminated string; the message gives
        its 1-based position.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if m := _SPACE.match(text, pos):
            pos = m.end()
            continue
        token = _next_token(text, pos)
        tokens.append(token)
        pos = token.pos + len(token.text)
    tokens.append(Token("END", "", len(text)))
    return tokens


def _next_token(text: str, pos: int) -> Token:
    char = text[pos]
    two = text[pos:pos + 2]
    if two in _OPERATORS:
        return Token("OP", two, pos)
    if char in "<>":
        return Token("OP", char, pos)
    if char in "()":
        return Token("LPAREN" if char == "(" else "RPAREN", char, pos)
    if char in "+-":
        return Token("MINUS" if char == "-" else "PLUS", char, pos)
    if char in "'\"":
        return _string_token(text, pos)
    if m := _NUMBER.match(text, pos):
        if m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] in "_."):
            raise _error(text, m.end(), "malformed number")
        number = float(m.group()) if any(c in m.group() for c in ".eE") else int(m.group())
        return Token("NUMBER", m.group(), pos, number)
    if m := _NAME.match(text, pos):
        word = m.group()
        if word in _KEYWORDS:
            return Token("KEYWORD", word, pos, _CONSTANTS.get(word))
        if word.startswith("_"):
            raise _error(text, pos, f"{word!r} is not a descriptor name")
        return Token("NAME", word, pos)
    if char == "=":
        raise _error(text, pos, "single '=' (use '==' to compare)")
    raise _error(text, pos, "unexpected character")


def _string_token(text: str, start: int) -> Token:
    quote = text[start]
    chars: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            chars.append(text[pos + 1])
            pos += 2
            continue
        if char == quote:
            return Token("STRING", text[start:pos + 1], start, "".join(chars))
        chars.append(char)
        pos += 1
    raise _error(text, start, "unterminated string starting")


# ----------------------------------------------------------------------
# Syntax tree
# ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Literal:
    """A literal value in an expression."""

    value: Any

    def __str__(self) -> str:
        return repr(self.value)


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """A descriptor call in an expression, e.g. ``exposure_time()``."""

    name: str
    pos: int = dataclasses.field(default=0, compare=False)

    def __str__(self) -> str:
        return self.name


Operand = Literal | Descriptor


@dataclasses.dataclass(frozen=True)
class Compare:
    """A comparison of a descriptor with a value."""

    op: str
    left: Operand
    right: Operand

    def __str__(self) -> str:
        return f"{self.left}{self.op}{self.right}"


@dataclasses.dataclass(frozen=True)
class Truth:
    """A lone operand: true when its value is truthy."""

    operand: Operand

    def __str__(self) -> str:
        return str(self.operand)


@dataclasses.dataclass(frozen=True)
class Not:
    """``not`` of an expression."""

    item: Node

    def __str__(self) -> str:
        return f"not {self.item}"


@dataclasses.dataclass(frozen=True)
class And:
    """``and`` of two expressions."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return "(" + " and ".join(map(str, self.items)) + ")"


@dataclasses.dataclass(frozen=True)
class Or:
    """``or`` of two expressions."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return "(" + " or ".join(map(str, self.items)) + ")"


Node = Compare | Truth | Not | And | Or


# ----------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------
#: Deepest nesting of parentheses and 'not' the parser accepts (each level costs Python stack frames).
MAX_DEPTH = 100


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def nest(self) -> None:
        """Enter one more level of '(' or 'not'; refuse absurd depths before Python's recursion limit."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep (parentheses and 'not')")

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def at_keyword(self, word: str) -> bool:
        return self.token.kind == "KEYWORD" and self.token.text == word

    def fail(self, problem: str) -> ExpressionError:
        return _error(self.text, self.token.pos, problem)

    def parse(self) -> Node:
        if self.token.kind == "END":
            raise self.fail("empty expression")
        node = self.or_expr()
        if self.token.kind != "END":
            raise self.fail("expected 'and', 'or' or the end of the expression")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.at_keyword("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.at_keyword("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            self.nest()
            self.advance()
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        if self.token.kind == "LPAREN":
            self.nest()
            self.advance()
            node = self.or_expr()
            if self.token.kind != "RPAREN":
                raise self.fail("expected ')'")
            self.advance()
            self.depth -= 1
            return node
        operands = [self.operand()]
        ops: list[str] = []
        while self.token.kind == "OP":
            ops.append(self.advance().text)
            operands.append(self.operand())
        if not ops:
            return Truth(operands[0])
        pairs = tuple(Compare(op, a, b) for op, a, b in zip(ops, operands, operands[1:]))
        return pairs[0] if len(pairs) == 1 else And(pairs)

    def operand(self) -> Operand:
        token = self.token
        if token.kind == "NAME":
            self.advance()
            return Descriptor(token.text, token.pos)
        if token.kind in ("NUMBER", "STRING") or (token.kind == "KEYWORD" and token.text in _CONSTANTS):
            self.advance()
            return Literal(token.value)
        if token.kind in ("MINUS", "PLUS"):
            self.advance()
            if self.token.kind != "NUMBER":
                raise self.fail(f"expected a number after {token.text!r}")
            value = self.advance().value
            return Literal(-value if token.kind == "MINUS" else value)
        raise self.fail("expected a descriptor name, a number or a quoted string")


# ----------------------------------------------------------------------
# Values: how the two sides of a comparison are brought together
# ----------------------------------------------------------------------
def _parse_temporal(kind: str, value: Any) -> Any:
    """``value`` (a string, date, time or datetime) as a ``kind`` object."""
    if isinstance(value, str):
        text = value.strip()
        if kind == "date":
            return dt.date.fromisoformat(text[:10])
        if kind == "time":
            return dt.time.fromisoformat(text)
        return dt.datetime.fromisoformat(text)
    if kind == "date" and isinstance(value, dt.datetime):
        return value.date()
    if kind == "time" and isinstance(value, dt.datetime):
        return value.time()
    if isinstance(value, (dt.datetime, dt.time)) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _as_number(value: Any) -> Any:
    """Strings that spell numbers become numbers (for non-strict matching)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(a: Any, b: Any, rtol: float) -> bool:
    return _is_number(a) and _is_number(b) and abs(a - b) <= rtol * max(abs(a), abs(b))


def _compare_loose(name: str | None, op: str, value: Any, literal: Any) -> bool:
    """Non-strict comparison of a descriptor ``value`` with ``literal``."""
    if isinstance(value, (list, tuple)) and value:
        # Per-array descriptors (GSAOI's four detectors): every array must match.
        if op == "!=":
            return not _compare_loose(name, "==", value, literal)
        return all(_compare_loose(name, op, v, literal) for v in value)
    if value is None or literal is None:
        return _OPERATORS[op](value, literal) if op in ("==", "!=") else False
    if _is_number(literal) != _is_number(value):
        value, literal = _as_number(value), _as_number(literal)
    rtol = RELATIVE_TOLERANCE.get(name or "")
    if rtol is not None and _is_number(value) and _is_number(literal):
        if _close(value, literal, rtol):
            return op in ("==", "<=", ">=")
    return _OPERATORS[op](value, literal)


# ----------------------------------------------------------------------
# The expression
# ----------------------------------------------------------------------
class _Failed:
    """Marks a descriptor that could not be computed for the current frame."""

    def __init__(self, error: Exception):
        self.error = error


@dataclasses.dataclass(frozen=True)
class Expression:
    """A parsed dataselect expression.

    Attributes
    ----------
    text
        The expression as the user wrote it.
    tree
        The syntax tree (``None`` for the empty expression, which is true).
    strict
        Whether comparisons use raw values and plain equality.
    """

    text: str
    tree: Node | None
    strict: bool = False

    def __str__(self) -> str:
        return self.text

    @property
    def descriptor_names(self) -> frozenset[str]:
        """Every descriptor name the expression uses."""
        return frozenset(d.name for d in _descriptors(self.tree)) if self.tree else frozenset()

    def evaluate(self, frame: DescriptorProvider, *,
                 on_error: Callable[[str, Exception], None] | None = None) -> bool:
        """Whether ``frame`` satisfies the expression.

        A descriptor that fails for this frame makes every comparison using it
        false (so ``not`` of such a comparison is true); ``on_error(name,
        error)`` is called once per failing descriptor.
        """
        if self.tree is None:
            return True
        cache: dict[str, Any] = {}

        def lookup(name: str) -> Any:
            if name not in cache:
                cache[name] = self._descriptor(frame, name)
                if isinstance(cache[name], _Failed):
                    log.debug("descriptor %s failed for %s: %s", name, _frame_name(frame), cache[name].error)
                    if on_error is not None:
                        on_error(name, cache[name].error)
            return cache[name]

        return bool(self._eval(self.tree, lookup))

    def _descriptor(self, frame: DescriptorProvider, name: str) -> Any:
        try:
            if not self.strict and name in PRETTY_DESCRIPTORS:
                return frame.descriptor(name, pretty=True)
            return frame.descriptor(name)
        except Exception as err:  # noqa: BLE001 - any failure makes the term false
            return _Failed(err)

    def _eval(self, node: Node, lookup: Callable[[str], Any]) -> bool:
        if isinstance(node, Or):
            return any(self._eval(item, lookup) for item in node.items)
        if isinstance(node, And):
            return all(self._eval(item, lookup) for item in node.items)
        if isinstance(node, Not):
            return not self._eval(node.item, lookup)
        if isinstance(node, Truth):
            value = self._value(node.operand, lookup)
            return not isinstance(value, _Failed) and bool(value)
        return self._compare(node, lookup)

    @staticmethod
    def _value(operand: Operand, lookup: Callable[[str], Any]) -> Any:
        return lookup(operand.name) if isinstance(operand, Descriptor) else operand.value

    def _compare(self, node: Compare, lookup: Callable[[str], Any]) -> bool:
        op, left, right = node.op, node.left, node.right
        if isinstance(right, Descriptor) and not isinstance(left, Descriptor):
            # Keep the descriptor on the left so its rules apply: 5==x is x==5.
            op, left, right = _FLIPPED[op], right, left
        a, b = self._value(left, lookup), self._value(right, lookup)
        if isinstance(a, _Failed) or isinstance(b, _Failed):
            return False
        try:
            if self.strict:
                return bool(_OPERATORS[op](a, b))
            name = left.name if isinstance(left, Descriptor) else None
            if name in TEMPORAL_DESCRIPTORS:
                kind = TEMPORAL_DESCRIPTORS[name]
                a, b = _parse_temporal(kind, a), _parse_temporal(kind, b)
            return _compare_loose(name, op, a, b)
        except (TypeError, ValueError) as err:
            # e.g. ordering a string against a number: the term is false.
            log.debug("cannot compare %r %s %r: %s", a, op, b, err)
            return False


def _descriptors(node: Node) -> Iterable[Descriptor]:
    if isinstance(node, (And, Or)):
        for item in node.items:
            yield from _descriptors(item)
    elif isinstance(node, Not):
        yield from _descriptors(node.item)
    elif isinstance(node, Truth):
        if isinstance(node.operand, Descriptor):
            yield node.operand
    else:
        for operand in (node.left, node.right):
            if isinstance(operand, Descriptor):
                yield operand


def _frame_name(frame: Any) -> str:
    return getattr(frame, "filename", None) or repr(frame)


def _check_literals(text: str, tree: Node) -> None:
    """Date and time literals must parse now, not once per file."""
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, (And, Or)):
            nodes.extend(node.items)
        elif isinstance(node, Not):
            nodes.append(node.item)
        elif isinstance(node, Compare):
            for desc, lit in ((node.left, node.right), (node.right, node.left)):
                if isinstance(desc, Descriptor) and isinstance(lit, Literal) and desc.name in TEMPORAL_DESCRIPTORS:
                    kind = TEMPORAL_DESCRIPTORS[desc.name]
                    try:
                        _parse_temporal(kind, lit.value)
                    except (TypeError, ValueError) as err:
                        raise _error(text, desc.pos, f"{desc.name} needs a {kind} literal, got {lit.value!r}") from err


def parse(text: str, *, strict: bool = False, known: Iterable[str] | None = None) -> Expression:
    """Parse a dataselect expression.

    Parameters
    ----------
    text
        The expression, e.g. ``'(observation_class=="science" and exposure_time==60.)'``.
        An empty or blank text selects everything.
    strict
        Compare raw descriptor values with plain equality.
    known
        The valid descriptor names; a name outside them is an error.  ``None``
        uses every descriptor of every instrument draconis knows; an empty
        collection turns the check off (the grammar still applies).

    Raises
    ------
    ExpressionError
        A syntax error (the message gives the position) or an unknown
        descriptor name.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"bad expression {text!r}: expected a string")
    if not text.strip():
        return Expression(text, None, strict)
    tree = _Parser(text).parse()
    known_names = frozenset(known) if known is not None else known_descriptor_names()
    if known_names:
        for desc in _descriptors(tree):
            if desc.name not in known_names:
                raise _error(text, desc.pos, f"unknown descriptor {desc.name!r}")
    _check_literals(text, tree)
    return Expression(text, tree, strict)


def known_descriptor_names() -> frozenset[str]:
    """Names of the descriptors of every instrument (empty if none are registered)."""
    try:
        from . import instruments
    except ImportError:
        return frozenset()
    getter = getattr(instruments, "all_descriptor_names", None)
    if getter is not None:
        return frozenset(getter())
    names: set[str] = set()
    for instrument in _registered_instruments(instruments):
        names.update(instrument.descriptor_names())
    return frozenset(names)


def _registered_instruments(module: Any) -> list[Any]:
    for attr in ("INSTRUMENTS", "REGISTRY", "instruments"):
        registry = getattr(module, attr, None)
        if isinstance(registry, dict):
            return list(registry.values())
        if isinstance(registry, (list, tuple)):
            return list(registry)
    return []
