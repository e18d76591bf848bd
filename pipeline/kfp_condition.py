"""Evaluates a task's trigger condition as Kubeflow Pipelines' driver does.

KFP evaluates `triggerPolicy.condition`, a CEL expression, against the task's
executor input; a false condition skips the task. TFX compiles `tfx.dsl.Cond`
into a small part of CEL (tfx/orchestration/kubeflow/v2/compiler_utils.py,
placeholder_to_cel), and this module evaluates exactly that part:

    inputs.artifacts['KEY'].artifacts[0].metadata['NAME']   inputs.artifacts['KEY'].artifacts[0].uri
    1.0   'text'   (a == b)   (a < b)   (a > b)   !(a)   (a && b)   (a || b)   (a + b)

Anything else is refused with ConditionError rather than guessed at. As in
CEL, comparing values of different types and reading a missing key are
errors, not false.
"""

from __future__ import annotations

import re
from typing import Any, List, Mapping, Tuple

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>-?\d+\.\d*(?:[eE][-+]?\d+)?|-?\d+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|&&|\|\||[<>!()\[\].+])
)""", re.VERBOSE)


class ConditionError(ValueError):
    """A condition this evaluator cannot read, or one CEL itself would fail on."""


def _tokens(expression: str) -> List[Tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if not match:
            raise ConditionError(f"cannot read {expression[position:]!r} in condition {expression!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over TFX's CEL, evaluating as it goes."""

    def __init__(self, expression: str, inputs: Mapping[str, Any]):
        self._expression = expression
        self._tokens = _tokens(expression)
        self._position = 0
        self._inputs = inputs

    def _peek(self) -> Tuple[str, str]:
        return self._tokens[self._position] if self._position < len(self._tokens) else ("end", "")

    def _take(self, value: str) -> None:
        kind, found = self._peek()
        if found != value:
            raise ConditionError(f"expected {value!r}, found {found or 'the end'!r} in {self._expression!r}")
        self._position += 1

    def parse(self) -> Any:
        value = self._or()
        if self._peek()[0] != "end":
            raise ConditionError(f"unexpected {self._peek()[1]!r} in {self._expression!r}")
        return value

    # CEL's precedence, lowest first: ||, &&, comparisons, +.
    def _or(self) -> Any:
        return self._chain(("||",), self._and)

    def _and(self) -> Any:
        return self._chain(("&&",), self._comparison)

    def _comparison(self) -> Any:
        left = self._sum()
        op = self._peek()[1]
        if op in ("==", "<", ">"):
            self._position += 1
            return _apply(op, left, self._sum(), self._expression)
        return left

    def _sum(self) -> Any:
        return self._chain(("+",), self._unary)

    def _chain(self, ops: Tuple[str, ...], operand) -> Any:
        value = operand()
        while self._peek()[1] in ops:
            op = self._peek()[1]
            self._position += 1
            value = _apply(op, value, operand(), self._expression)
        return value

    def _unary(self) -> Any:
        kind, token = self._peek()
        if token == "!":
            self._position += 1
            value = self._unary()
            if not isinstance(value, bool):
                raise ConditionError(f"'!' of a non-boolean {value!r} in {self._expression!r}")
            return not value
        if token == "(":
            self._position += 1
            value = self._or()
            self._take(")")
            return value
        if kind == "number":
            self._position += 1
            return float(token)
        if kind == "string":
            self._position += 1
            return token[1:-1].encode().decode("unicode_escape")
        if token == "inputs":
            return self._artifact_access()
        raise ConditionError(f"unexpected {token or 'end'!r} in {self._expression!r}")

    def _key(self) -> str:
        self._take("[")
        kind, token = self._peek()
        if kind != "string":
            raise ConditionError(f"expected a quoted key, found {token!r} in {self._expression!r}")
        self._position += 1
        self._take("]")
        return token[1:-1]

    def _artifact_access(self) -> Any:
        self._take("inputs")
        self._take(".")
        self._take("artifacts")
        key = self._key()
        artifacts = self._inputs.get("artifacts", {})
        if key not in artifacts:
            raise ConditionError(f"no input artifact {key!r} for condition {self._expression!r}")
        self._take(".")
        self._take("artifacts")
        self._take("[")
        kind, index = self._peek()
        if kind != "number" or "." in index:
            raise ConditionError(f"expected an artifact index, found {index!r} in {self._expression!r}")
        self._position += 1
        self._take("]")
        artifact = artifacts[key]["artifacts"][int(index)]
        self._take(".")
        kind, field = self._peek()
        self._position += 1
        if field == "uri":
            return artifact["uri"]
        if field != "metadata":
            raise ConditionError(f"artifact field {field!r} is not one TFX compiles, in {self._expression!r}")
        name = self._key()
        metadata = artifact.get("metadata", {})
        if name not in metadata:
            raise ConditionError(f"input artifact {key!r} has no metadata {name!r}, which condition "
                                 f"{self._expression!r} reads")
        return metadata[name]


def _apply(op: str, left: Any, right: Any, expression: str) -> Any:
    if op in ("&&", "||"):
        if not (isinstance(left, bool) and isinstance(right, bool)):
            raise ConditionError(f"{op!r} of non-booleans {left!r}, {right!r} in {expression!r}")
        return (left and right) if op == "&&" else (left or right)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if not numbers and type(left) is not type(right):
        raise ConditionError(f"{op!r} between {type(left).__name__} {left!r} and {type(right).__name__} "
                             f"{right!r} in {expression!r}: CEL has no such overload")
    if op == "==":
        return left == right
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    return left + right


def evaluate(condition: str, executor_input: Mapping[str, Any]) -> bool:
    """Whether the task runs: `condition` against the `inputs` of its executor input."""
    value = _Parser(condition, executor_input.get("inputs", {})).parse()
    if not isinstance(value, bool):
        raise ConditionError(f"condition {condition!r} gives {value!r}, not true or false")
    return value
