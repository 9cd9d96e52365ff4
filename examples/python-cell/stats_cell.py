"""The `pycell` example cell's state and rules, in plain Python.

Nothing here imports the WIT bindings, so the rules test with any Python
(`python -m unittest test_stats_cell`); `app.py` binds them to the `cell`
world. Errors a caller can fix are `InvalidInput`; nothing else is raised on
purpose, and `app.py` turns any other exception into a typed `failed` error.
"""

import json
import math
import statistics

CELL_ID = "pycell"
CELL_TYPE = "python_cell"
IDENTITY = "cellmesh example: statistics cell (Python)"
STAGE = "statistical_awareness"
HEALTH_STATUS = "healthy"

STATS = "stats"
STATS_DESCRIPTION = (
    "Summary statistics of a list of numbers: count, sum, mean, median, "
    "min, max, sample and population standard deviation."
)
STATS_EXAMPLE = '{"values": [2, 4, 4, 4, 5, 5, 7, 9]}'

START_LEVEL = 0.2
START_COHERENCE = 0.5
# Evolution: logistic growth towards 1 at BASE_RATE per second, up to twice
# as fast for a cell that has computed (computations / 100, capped at 1).
BASE_RATE_PER_S = 0.001
MAX_STEP_MS = 60_000
# Most numbers one `stats` call accepts (bounds the work per call).
MAX_VALUES = 10_000
# Most arrays and objects one JSON input may hold. CPython's C JSON reader
# recurses once per nesting level, and in WebAssembly the interpreter's
# recursion guard does not see the wasm stack: a 1 MiB run of `[` exhausts
# it and traps instead of raising RecursionError. Counting brackets first is
# cheap (str.count runs in C) and bounds the depth; `stats` needs two.
MAX_CONTAINERS = 64
# Longest error text handed back through the boundary.
MAX_ERROR_CHARS = 300

PRIMITIVE_NAMES = ("insight", "coherence")


class InvalidInput(Exception):
    """The input was not acceptable; the message says what was wrong."""


def _reject_constant(name):
    raise InvalidInput(f"`{name}` is not a JSON number")


def parse_json(text):
    """Parses strict JSON (no NaN/Infinity) holding at most MAX_CONTAINERS
    arrays and objects; InvalidInput when it is not."""
    if text.count("[") + text.count("{") > MAX_CONTAINERS:
        raise InvalidInput(
            f"input holds more than {MAX_CONTAINERS} arrays and objects "
            '(brackets inside strings count too); expected {"values": [numbers]}'
        )
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except RecursionError:
        raise InvalidInput("input is nested too deeply") from None
    except ValueError as e:
        raise InvalidInput(f"input is not JSON: {e}"[:MAX_ERROR_CHARS]) from None


def finite_numbers(values):
    """The list as floats; InvalidInput unless it is 1..MAX_VALUES finite numbers."""
    if not isinstance(values, list) or not values:
        raise InvalidInput("`values` must be a non-empty list of numbers")
    if len(values) > MAX_VALUES:
        raise InvalidInput(f"at most {MAX_VALUES} values, got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidInput(f"`values[{i}]` is not a number")
        try:
            f = float(v)
        except OverflowError:
            raise InvalidInput(f"`values[{i}]` is out of range") from None
        if not math.isfinite(f):
            raise InvalidInput(f"`values[{i}]` is not finite")
        out.append(f)
    return out


def summarize(values):
    """Summary statistics of finite floats, as a dict of finite numbers or None."""
    n = len(values)
    return {
        "count": n,
        "sum": math.fsum(values),
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.stdev(values) if n > 1 else None,
        "pstdev": statistics.pstdev(values),
    }


def to_json(obj):
    """Compact JSON; ValueError when a number is not finite (never NaN on the wire)."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


class StatsCell:
    """The cell: a level within [0, 1], two primitives, and counters."""

    def __init__(self):
        self.level = START_LEVEL
        self.coherence = START_COHERENCE
        self.computations = 0
        self.messages = 0

    def insight(self):
        """computations / (computations + 5): 0 when idle, towards 1 when busy."""
        return self.computations / (self.computations + 5)

    def primitives(self):
        """(name, value) pairs in PRIMITIVE_NAMES order."""
        return [("insight", self.insight()), ("coherence", self.coherence)]

    def evolve(self, elapsed_ms):
        """level += rate * dt * (1 - level); rate = 0.001/s * (1 + min(computations, 100) / 100),
        dt capped at 60 s. Deterministic; the level never leaves [0, 1]."""
        dt = min(max(int(elapsed_ms), 0), MAX_STEP_MS) / 1000.0
        rate = BASE_RATE_PER_S * (1 + min(self.computations, 100) / 100)
        self.level = min(1.0, max(0.0, self.level + rate * dt * (1 - self.level)))
        return self.level

    def sync(self, peer_level, context):
        """The level becomes the mean of ours and the peer's (clamped to [0, 1]);
        a `coherence` in the context becomes ours (clamped). Non-finite numbers
        change nothing. Returns (old, new, delta, primitives_updated)."""
        old = self.level
        delta = 0.0
        if math.isfinite(peer_level):
            delta = abs(old - peer_level)
            if not math.isfinite(delta):
                delta = 0.0
            self.level = min(1.0, max(0.0, (old + min(1.0, max(0.0, peer_level))) / 2))
        updated = False
        for name, value in context:
            if name == "coherence" and math.isfinite(value):
                value = min(1.0, max(0.0, value))
                updated = updated or value != self.coherence
                self.coherence = value
        return old, self.level, delta, updated

    def stats(self, text):
        """The `stats` capability: `{"values": [numbers]}` -> JSON summary."""
        doc = parse_json(text)
        if not isinstance(doc, dict):
            raise InvalidInput('input must be a JSON object {"values": [numbers]}')
        result = summarize(finite_numbers(doc.get("values")))
        self.computations += 1
        result["computations"] = self.computations
        return to_json(result)

    def handle_message(self, content, message_type):
        """Answers (content, message_type). A list of numbers (or an object with
        `values`) is answered with its statistics; anything else with a receipt."""
        self.messages += 1
        if message_type == "ping":
            return "pong", "pong"
        if content.lstrip()[:1] in ("[", "{"):
            try:
                doc = parse_json(content)
                values = doc.get("values") if isinstance(doc, dict) else doc
                result = summarize(finite_numbers(values))
                self.computations += 1
                return to_json(result), "stats"
            except (InvalidInput, ValueError, ArithmeticError):
                pass
        receipt = {"received": self.messages, "chars": len(content)}
        return to_json(receipt), "ack"
