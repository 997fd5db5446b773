from contextvars import ContextVar

from xpuport.lowering.collect import collecting, note

NAMES: ContextVar[list[str] | None] = ContextVar("test_names", default=None)


def test_notes_reach_the_open_collection_and_only_it():
    note(NAMES, ["before"])  # none open: dropped, not an error
    with collecting(NAMES) as outer:
        note(NAMES, ["a"])
        with collecting(NAMES) as inner:
            note(NAMES, iter(["b", "c"]))
        note(NAMES, ["d"])
    assert outer == ["a", "d"] and inner == ["b", "c"]
    assert NAMES.get() is None  # closed again
