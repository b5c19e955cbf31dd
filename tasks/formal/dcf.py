"""Deterministic context-free languages (Chomsky level DCF): a deterministic pushdown automaton suffices."""
from __future__ import annotations

import numpy as np

from ..base import IGNORE
from .base import Language

# PAD, + - * ( ) =, then digits 0..4 as tokens 7..11
BRACKETS = ("_", "+", "-", "*", "(", ")", "=", "0", "1", "2", "3", "4")
_PLUS, _MINUS, _TIMES, _OPEN, _CLOSE, _EQUALS, _DIGIT0 = 1, 2, 3, 4, 5, 6, 7


def bracket_expression(rng: np.random.Generator, length: int, ops: tuple[int, ...]) -> tuple[list[int], int]:
    """A random bracketed expression of exactly ``length`` tokens (DeepMind's grammar) and its integer value.

    1: d; 2: -d; 3: (d); 4: (-d); >= 5: ( E op E' ) with len(E) ~ U{1..length-4}, len(E') = length - 3 - len(E).
    """
    if length <= 4:
        d = int(rng.integers(0, 5))
        tokens = {1: [_DIGIT0 + d], 2: [_MINUS, _DIGIT0 + d], 3: [_OPEN, _DIGIT0 + d, _CLOSE],
                  4: [_OPEN, _MINUS, _DIGIT0 + d, _CLOSE]}[length]
        return tokens, (-d if length in (2, 4) else d)
    left_len = int(rng.integers(1, length - 3))
    left, a = bracket_expression(rng, left_len, ops)
    right, b = bracket_expression(rng, length - 3 - left_len, ops)
    op = int(ops[rng.integers(0, len(ops))])
    value = a + b if op == _PLUS else a - b if op == _MINUS else a * b
    return [_OPEN, *left, op, *right, _CLOSE], value


def modular_arithmetic_brackets(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Modular arithmetic with brackets: a bracketed expression of n - 1 tokens over digits 0-4 and + - *, then
    "="; answer its value mod 5.

    Example: ``( ( 3 * - 2 ) + 4 ) =`` -> ``3`` (-6 + 4 = -2, and -2 mod 5 = 3).
    """
    xs, ys = [], []
    for _ in range(batch):
        tokens, value = bracket_expression(rng, n - 1, (_PLUS, _MINUS, _TIMES))
        xs.append(tokens + [_EQUALS])
        ys.append(value % 5 + _DIGIT0)
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)[:, None]


# PAD, + - * ( ) x = ?, then digits 0..4 as tokens 9..13. "*" is in the paper's vocabulary (|V| = 14) but never
# generated: without it the equation is linear in x with coefficient +-1, so its solution is unique.
EQUATION = ("_", "+", "-", "*", "(", ")", "x", "=", "?", "0", "1", "2", "3", "4")


def solve_equation(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve equation: a bracketed + / - expression of n - 3 tokens with one digit replaced by x, then "= r ?";
    answer the digit x (mod 5) that makes the expression equal r mod 5.

    Example: ``( 3 - x ) = 1 ?`` -> ``2``.
    """
    xs, ys = [], []
    for _ in range(batch):
        tokens, value = bracket_expression(rng, n - 3, (_PLUS, _MINUS))
        digits = [i for i, t in enumerate(tokens) if t >= _DIGIT0]
        hidden = digits[int(rng.integers(0, len(digits)))]
        answer = tokens[hidden] - _DIGIT0
        # map the bracket vocabulary onto this one: digits move from 7.. to 9..; x is 6
        mapped = [t + 2 if t >= _DIGIT0 else t for t in tokens]
        mapped[hidden] = 6
        xs.append(mapped + [7, value % 5 + 9, 8])
        ys.append(answer + 9)
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)[:, None]


# PAD, the query "?", then 10 symbols 0..9 as tokens 2..11
STRING10 = ("_", "?", *map(str, range(10)))


def reverse_string(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reverse string over 10 symbols; answer the input reversed, one symbol per query position.

    Example: ``3 1 4`` -> ``4 1 3``.
    """
    x = rng.integers(2, 12, size=(batch, n))
    return x, x[:, ::-1].copy()


# PAD, query, pop, push a..d, then the stack symbols a..d
STACK = ("_", "?", "pop", "+a", "+b", "+c", "+d", "a", "b", "c", "d")
_POP, _PUSH0, _SYM0 = 2, 3, 7


def _stack_run(rng: np.random.Generator, batch: int, n: int, top_first: bool) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(batch):
        k = int(rng.integers(1, n))
        stack = list(rng.integers(0, 4, size=k))
        actions = np.where(rng.random(n - k) < 1 / 3, -1, rng.integers(0, 4, size=n - k))
        tokens = [_SYM0 + s for s in stack]
        for a in actions:
            if a < 0:
                tokens.append(_POP)
                if stack:
                    stack.pop()
            else:
                tokens.append(_PUSH0 + int(a))
                stack.append(int(a))
        xs.append(tokens)
        ys.append([_SYM0 + s for s in (reversed(stack) if top_first else stack)])
    width = max(1, max(len(y) for y in ys))
    y = np.full((batch, width), IGNORE, dtype=np.int64)
    for i, row in enumerate(ys):
        y[i, : len(row)] = row
    return np.array(xs, dtype=np.int64), y


def stack_manipulation(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack manipulation: an initial stack (bottom to top) of k ~ U{1..n-1} symbols, then n - k actions (pop with
    probability 1/3, else push one of a-d; pop on an empty stack does nothing); answer the final stack bottom to
    top, as the paper's Listing 1 does. An empty final stack has no answer symbols (the sample is not scored).

    Example: ``a a c pop pop +c +c`` -> ``a c c``.
    """
    return _stack_run(rng, batch, n, top_first=False)


def stack_manipulation_deepmind(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack manipulation answered top to bottom, as DeepMind's code does (without its end marker).

    Example: ``a a c pop pop +c +c`` -> ``c c a``.
    """
    return _stack_run(rng, batch, n, top_first=True)


LANGUAGES = {
    "modular_arithmetic_brackets": Language("modular_arithmetic_brackets", "Mod Arithmetic (w/ brackets)",
                                            "deterministic context-free", BRACKETS, 5, modular_arithmetic_brackets,
                                            min_length=2),
    "solve_equation": Language("solve_equation", "Solve Equation", "deterministic context-free", EQUATION, 5,
                               solve_equation, min_length=4),
    "reverse_string": Language("reverse_string", "Reverse String", "deterministic context-free", STRING10, 10,
                               reverse_string, query=1),
    "stack_manipulation": Language("stack_manipulation", "Stack Manipulation", "deterministic context-free", STACK, 4,
                                   stack_manipulation, min_length=2, query=1,
                                   variants={"deepmind": stack_manipulation_deepmind}),
}
