"""The serving process's collector settings: applied once the first gateway is up, undone when the last stops."""

from __future__ import annotations

import gc

from omnirelay import heap


def test_settle_freezes_the_loaded_heap_and_release_undoes_it_after_the_last_gateway() -> None:
    running = heap._active  # gateways of other tests may still be up in this process: start from none
    while heap._active:
        heap.release()
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    heap.settle()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # everything loaded so far (modules, tables) is out of the collector's scans
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *before[1:])
    later = [[n] for n in range(10_000)]  # objects made after the first gateway started
    heap.settle()  # a second gateway in the same process freezes nothing more (frozen objects may still be freed)
    assert gc.get_freeze_count() <= frozen
    heap.release()
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD  # one gateway still runs
    assert 0 < gc.get_freeze_count() <= frozen
    del later
    heap.release()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    heap.release()  # more stops than starts change nothing
    assert gc.get_threshold() == before
    for _ in range(running):
        heap.settle()
