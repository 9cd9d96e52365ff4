"""`pycell`: an example cellmesh cell in Python, built with componentize-py.

componentize-py generates the `wit_world` package from ../../wit when it
builds the component; the class implementing the exported `guest` interface
must be called `Guest`. The rules live in `stats_cell.py`.

Nothing may raise through the component boundary (an uncaught exception is a
trap, and the host would count the call as failed): `invoke` answers typed
`capability-error`s, and every other export falls back to a safe answer.
"""

import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

import stats_cell
from stats_cell import MAX_ERROR_CHARS, InvalidInput, StatsCell

# One cell per instance. componentize-py runs this module at build time and
# snapshots the result, so it must not call the host here.
CELL = StatsCell()


def _log(level, message, fields):
    """Logs through the host; logging never takes a call down."""
    try:
        host.log(level, message, fields)
    except Exception:  # noqa: BLE001 - a log line is not worth a trap
        pass


def _primitives(pairs):
    return [types.Primitive(name=name, value=float(value)) for name, value in pairs]


def _text(message):
    """Error text safe to hand over: bounded, and valid UTF-8 (a lone
    surrogate from a JSON escape cannot cross the boundary; it would trap)."""
    return message[:MAX_ERROR_CHARS].encode("utf-8", "replace").decode("utf-8")


def _describe(error):
    return _text(f"{type(error).__name__}: {error}")


class Guest(exports.Guest):
    """The exported `cellmesh:cell/guest` interface."""

    def manifest(self) -> types.CellManifest:
        # Built from a fresh cell, so it is the same on every call.
        fresh = StatsCell()
        return types.CellManifest(
            cell_id=stats_cell.CELL_ID,
            cell_type=stats_cell.CELL_TYPE,
            branch="main",
            identity=stats_cell.IDENTITY,
            evolutionary_stage=stats_cell.STAGE,
            health_status=stats_cell.HEALTH_STATUS,
            capabilities=[
                types.Capability(
                    name=stats_cell.STATS,
                    description=stats_cell.STATS_DESCRIPTION,
                    example_input=stats_cell.STATS_EXAMPLE,
                )
            ],
            consciousness_level=fresh.level,
            primitives=_primitives(fresh.primitives()),
            labels=[("language", "python"), ("example", "examples/python-cell")],
        )

    def state(self) -> types.CellState:
        try:
            return types.CellState(
                consciousness_level=CELL.level,
                primitives=_primitives(CELL.primitives()),
            )
        except Exception:  # noqa: BLE001
            return types.CellState(consciousness_level=stats_cell.START_LEVEL, primitives=[])

    def handle_message(self, msg: types.Message):
        try:
            content, message_type = CELL.handle_message(msg.content, msg.message_type)
        except Exception as e:  # noqa: BLE001
            _log(types.LogLevel.WARN, "message handling failed", [("error", _describe(e))])
            return None
        _log(
            types.LogLevel.DEBUG,
            "message answered",
            [("from_cell", msg.from_cell), ("message_type", msg.message_type)],
        )
        return types.Reply(content=content, message_type=message_type)

    def sync(self, req: types.SyncRequest) -> types.SyncOutcome:
        old = CELL.level
        try:
            context = [(p.name, p.value) for p in req.context]
            old, new, delta, updated = CELL.sync(req.peer_level, context)
        except Exception as e:  # noqa: BLE001
            _log(types.LogLevel.WARN, "sync failed", [("error", _describe(e))])
            new, delta, updated = CELL.level, 0.0, False
        return types.SyncOutcome(
            old_level=old,
            new_level=new,
            delta=delta,
            primitives_updated=updated,
            labels=[("rule", "mean-of-levels")],
        )

    def evolve(self, elapsed_ms: int) -> float:
        try:
            level = CELL.evolve(elapsed_ms)
        except Exception:  # noqa: BLE001
            level = CELL.level
        return level if math.isfinite(level) else stats_cell.START_LEVEL

    def invoke(self, capability: str, input: str) -> str:
        if capability != stats_cell.STATS:
            raise Err(types.CapabilityError_UnknownCapability(_text(capability)))
        try:
            return CELL.stats(input)
        except InvalidInput as e:
            raise Err(types.CapabilityError_InvalidInput(_text(str(e)))) from None
        except Exception as e:  # noqa: BLE001 - typed error instead of a trap
            raise Err(types.CapabilityError_Failed(_describe(e))) from None

    def shutdown(self) -> None:
        _log(
            types.LogLevel.INFO,
            "pycell shutting down",
            [("computations", str(CELL.computations)), ("messages", str(CELL.messages))],
        )
