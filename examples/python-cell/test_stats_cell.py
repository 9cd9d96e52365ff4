"""Native tests of the rules: `python -m unittest test_stats_cell` (no WIT needed)."""

import json
import math
import unittest

from stats_cell import (
    MAX_VALUES,
    STATS_EXAMPLE,
    InvalidInput,
    StatsCell,
    parse_json,
)


class StatsTests(unittest.TestCase):
    def test_example_input_succeeds(self):
        out = json.loads(StatsCell().stats(STATS_EXAMPLE))
        self.assertEqual(out["count"], 8)
        self.assertEqual(out["mean"], 5)
        self.assertEqual(out["median"], 4.5)
        self.assertEqual(out["pstdev"], 2)
        self.assertAlmostEqual(out["stdev"], math.sqrt(32 / 7))

    def test_single_value_has_no_sample_stdev(self):
        out = json.loads(StatsCell().stats('{"values":[3]}'))
        self.assertIsNone(out["stdev"])

    def test_bad_input_is_invalid_input(self):
        cell = StatsCell()
        for bad in [
            "",
            "not json",
            "[1, 2]",
            '{"values": []}',
            '{"values": [1, "x"]}',
            '{"values": [true]}',
            '{"values": [NaN]}',
            '{"values": [1e999]}',
            '{"values": [' + "9" * 400 + "]}",
            json.dumps({"values": list(range(MAX_VALUES + 1))}),
            "[" * 100_000,
            "[" * 65 + "]" * 65,
        ]:
            with self.assertRaises(InvalidInput, msg=bad[:40]):
                cell.stats(bad)

    def test_nesting_within_the_bound_is_parsed(self):
        expected = []
        for _ in range(63):
            expected = [expected]
        self.assertEqual(parse_json("[" * 64 + "]" * 64), expected)
        with self.assertRaises(InvalidInput):
            parse_json("{" * (1 << 20))

    def test_overflowing_result_is_an_error_not_nan(self):
        with self.assertRaises((ValueError, ArithmeticError)):
            StatsCell().stats('{"values": [1.7e308, 1.7e308, -1.7e308]}')


class CellTests(unittest.TestCase):
    def test_messages_are_answered(self):
        cell = StatsCell()
        self.assertEqual(cell.handle_message("", "ping"), ("pong", "pong"))
        content, kind = cell.handle_message("[1, 2, 3]", "text")
        self.assertEqual(kind, "stats")
        self.assertEqual(json.loads(content)["mean"], 2)
        content, kind = cell.handle_message("{not json\u0000", "text")
        self.assertEqual(kind, "ack")
        self.assertEqual(json.loads(content), {"received": 3, "chars": 10})

    def test_sync_handles_non_finite_levels(self):
        cell = StatsCell()
        old, new, delta, updated = cell.sync(0.8, [("coherence", 2.0)])
        self.assertEqual((old, new, updated), (0.2, 0.5, True))
        self.assertAlmostEqual(delta, 0.6)
        for level in (math.nan, math.inf, -math.inf):
            old, new, delta, updated = cell.sync(level, [("coherence", math.nan)])
            self.assertEqual((new, delta, updated), (old, 0.0, False))
        _, new, delta, _ = cell.sync(-1.7e308, [])
        self.assertEqual(new, 0.25)
        self.assertTrue(math.isfinite(delta))

    def test_evolution_stays_bounded(self):
        cell = StatsCell()
        self.assertGreater(cell.evolve(5_000), 0.2)
        cell.computations = 10**30
        for _ in range(10_000):
            level = cell.evolve(2**64 - 1)
        self.assertTrue(0.99 < level <= 1.0)


if __name__ == "__main__":
    unittest.main()
