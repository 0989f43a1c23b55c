"""Bounded pre-reading of pickle streams, before any unpickler sees them.

An unpickler does work that its input barely pays for: ``LONG_BINPUT 4294967295`` makes
CPython's unpickler allocate and clear a memo table of tens of gigabytes, a tuple that holds
the tuple below it twice, sixty levels deep, takes 2**60 steps to hash when it becomes a dict
key, and a few megabytes of one-byte opcodes make tens of millions of objects.
:func:`scan_pickle` walks the opcodes once, simulating the unpickler's stack with abstract
values, and refuses a stream that exceeds :class:`PickleLimits`: the number of opcodes, the
bytes of its strings, memo indices, and the nesting depth and expanded size of its tuples
(the only containers that are hashed whole). Nothing is built, so the scan itself takes time
proportional to the stream.
"""
from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass
from typing import Any, BinaryIO

from insetgan.networks.errors import CheckpointError, one_line

# Opcodes whose stack effect the scan models itself; every other opcode is read generically
# from its pickletools description (pop the arguments, push opaque results).
_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
# Integers are hashed and printed digit by digit; checkpoints hold none wider than a torch magic number.
_MAX_INT_BITS = 256


@dataclass(frozen=True)
class PickleLimits:
    """What one checkpoint file may make its readers do.

    ``max_ops`` bounds the unpickling steps of all its pickles together: one per opcode, plus
    the expanded size of each tuple handed to an operation that may hash it (StyleGAN
    snapshots with G, D and G_ema take tens of thousands), ``max_bytes`` the file and everything its pickles allocate
    (strings, byte blobs, arrays, tensor storages), ``max_depth`` the nesting of tuples, of
    walked containers and of sub-modules, and ``max_nodes`` the expanded size of a tuple or of
    a walked value (constructor arguments, recorded attributes), counting shared parts once
    per reference.
    """

    max_ops: int = 2_000_000
    max_bytes: int = 4 * 2**30
    max_depth: int = 64
    max_nodes: int = 100_000


DEFAULT_LIMITS = PickleLimits()


class Budget:
    """Opcodes and bytes spent so far while reading one file, checked against its limits."""

    def __init__(self, limits: PickleLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.ops = 0
        self.bytes = 0

    def spend_ops(self, n: int) -> None:
        """Count ``n`` more steps; refuse when the file's total exceeds ``max_ops``."""
        self.ops += n
        if self.ops > self.limits.max_ops:
            raise CheckpointError(f"pickle needs more than {self.limits.max_ops:,} unpickling steps (limit)")

    def spend_bytes(self, n: int, what: str = "data") -> None:
        """Count ``n`` more bytes of ``what``; refuse when the total exceeds ``max_bytes``."""
        self.bytes += max(int(n), 0)
        if self.bytes > self.limits.max_bytes:
            raise CheckpointError(f"{what} would take the file's data past {self.limits.max_bytes:,} bytes (limit)")


class _Capped:
    """A read-only view of a binary stream that never reads past ``end`` (so lengths cannot over-allocate)."""

    def __init__(self, stream: BinaryIO, end: int) -> None:
        self._stream, self._end = stream, end

    def _left(self) -> int:
        return max(self._end - self._stream.tell(), 0)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when negative), never past the end."""
        return self._stream.read(self._left() if n < 0 else min(n, self._left()))

    def readline(self) -> bytes:
        """One line, never past the end."""
        return self._stream.readline(self._left())

    def tell(self) -> int:
        """The position in the underlying stream."""
        return self._stream.tell()


def _tuple_of(items: list, limits: PickleLimits) -> tuple[int, int]:
    """The abstract value of a tuple of ``items``: (nesting depth, expanded size), checked against ``limits``."""
    depth, size = 1, 1
    for item in items:
        if type(item) is tuple:
            depth, size = max(depth, item[0] + 1), size + item[1]
        else:
            size += 1
    if depth > limits.max_depth:
        raise CheckpointError(f"pickle nests tuples more than {limits.max_depth} levels deep (limit)")
    if size > limits.max_nodes:
        raise CheckpointError(f"pickle builds a tuple of more than {limits.max_nodes:,} elements, "
                              "counting shared parts once per reference (limit)")
    return depth, size


class _Machine:
    """The unpickler's stack and memo with abstract values: a tuple is (depth, size), anything else opaque."""

    OPAQUE = None

    def __init__(self, budget: Budget) -> None:
        self.budget, self.limits = budget, budget.limits
        self.stack: list = []
        self.marks: list[int] = []  # stack heights at each MARK, innermost last
        self.memo: dict[int, Any] = {}

    def pop(self, n: int, pos: int) -> list:
        """Remove and return the top ``n`` items; popping below the innermost mark is an underflow."""
        if len(self.stack) - n < (self.marks[-1] if self.marks else 0):
            raise CheckpointError(f"corrupt pickle: stack underflow at byte {pos}")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def pop_mark(self, pos: int) -> list:
        """Remove and return everything above the innermost mark, and the mark."""
        if not self.marks:
            raise CheckpointError(f"corrupt pickle: no mark at byte {pos}")
        height = self.marks.pop()
        items = self.stack[height:]
        del self.stack[height:]
        return items

    def step(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        """Apply one opcode's effect on the stack and memo."""
        name = op.name
        if name in _TUPLE_SIZES:
            self.stack.append(_tuple_of(self.pop(_TUPLE_SIZES[name], pos), self.limits))
        elif name == "TUPLE":
            self.stack.append(_tuple_of(self.pop_mark(pos), self.limits))
        elif name in _PUTS or name == "MEMOIZE":
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not 0 <= index <= self.limits.max_ops:
                raise CheckpointError(f"pickle memo index {index} at byte {pos} is out of range")
            self.memo[index] = self.pop(1, pos)[0]
            self.stack.append(self.memo[index])
        elif name in _GETS:
            if arg not in self.memo:
                raise CheckpointError(f"corrupt pickle: memo entry {arg} read before it is written (byte {pos})")
            self.stack.append(self.memo[arg])
        elif name == "DUP":
            self.stack.extend(self.pop(1, pos) * 2)
        elif name == "MARK":
            self.marks.append(len(self.stack))
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                items = self.pop_mark(pos) + self.pop(before.index(pickletools.markobject), pos)
            else:
                items = self.pop(len(before), pos)
            # Whatever receives a tuple may hash it (dict keys, set members), which walks all of
            # it every time: each hand-over costs its expanded size.
            self.budget.spend_ops(sum(item[1] for item in items if type(item) is tuple))
            self.stack.extend([self.OPAQUE] * len(op.stack_after))


def scan_pickle(stream: BinaryIO, budget: Budget, end: int | None = None) -> None:
    """Read one pickle from ``stream`` up to its STOP opcode, refusing streams over ``budget``'s limits.

    ``end`` (default: the stream's end) is where the stream's data ends: a length that points
    past it reads only what is there (and is then refused as truncated). Leaves ``stream`` just
    after the STOP opcode. Raises :class:`CheckpointError` for a limit and for a stream the
    unpickler could not run (stack underflow, a missing mark or memo entry, truncation, an
    unknown opcode).
    """
    if end is None:
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    machine = _Machine(budget)
    try:
        for op, arg, pos in pickletools.genops(_Capped(stream, end)):
            budget.spend_ops(1)
            if isinstance(arg, (bytes, bytearray, str)):
                budget.spend_bytes(len(arg), "a string")
            elif isinstance(arg, int) and arg.bit_length() > _MAX_INT_BITS:
                raise CheckpointError(f"pickle holds a {arg.bit_length()}-bit integer at byte {pos} (limit: "
                                      f"{_MAX_INT_BITS} bits)")
            machine.step(op, arg, pos)
    except CheckpointError:
        raise
    except (ValueError, OverflowError, EOFError, MemoryError) as exc:
        raise CheckpointError(f"corrupt or truncated pickle ({type(exc).__name__}: {one_line(str(exc))})") \
            from None
