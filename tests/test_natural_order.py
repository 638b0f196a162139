"""The review queue and Next flagged list samples in natural order (``01/2`` before ``01/10``), the same one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from _store_fixtures import blob_mask
from _store_fixtures import named_sample as sample

from annotator_app.review_queue import natural_key, next_flagged, queue_rows
from hmtools.store import MaskStore
from hmtools.store_admin import acquire_lock
from hmtools.store_types import MaskWrite

# FineDiving ids are "<video name>/<instance idx>" (hmtools.datasets.finediving): the 15 MTL-AQA videos
# '01'...'26' and 120 FINA/Olympic/European ones, idx from 0 or 1, two or three digits.
FINEDIVING = [
    "01/1",
    "01/2",
    "01/10",
    "01/11",
    "02/1",
    "10/3",
    "26/180",
    "FINADivingWorldCup2021_Men3m_final_r1/0",
    "FINADivingWorldCup2021_Men3m_final_r1/9",
    "FINADivingWorldCup2021_Men3m_final_r1/10",
    "FINADivingWorldCup2021_Men3m_final_r2/0",
    "FINADivingWorldCup2021_Men3m_final_r10/0",
    "FINAWorldChampionships2019_Men10m_final_r4/1",
    "FINAWorldChampionships2019_Men10mSynchronised_final_r4/1",
]


def shuffled(ids: list[str], seed: int = 0) -> list[str]:
    out = list(ids)
    random.Random(seed).shuffle(out)
    return out


def test_digit_runs_sort_by_value_in_finediving_and_mtl_aqa_ids() -> None:
    assert sorted(shuffled(FINEDIVING), key=natural_key) == FINEDIVING
    mtl = [f"{v:02d}/{c}" for v in (1, 2, 9) for c in (1, 2, 3, 10, 11, 20, 100)]  # hmtools.datasets.mtl_aqa
    assert sorted(shuffled(mtl), key=natural_key) == mtl
    assert sorted(["01/0", "01/1", "01/10", "01/2"], key=natural_key) == ["01/0", "01/1", "01/2", "01/10"]
    aqa7 = ["diving/001", "diving/002", "diving/010", "gym_vault/001"]  # zero-padded: unchanged
    assert sorted(shuffled(aqa7), key=natural_key) == aqa7 == sorted(aqa7)


def test_text_folds_case_and_ties_are_broken_by_the_raw_id() -> None:
    assert sorted(["b/1", "A/2", "a/1", "B/0"], key=natural_key) == ["a/1", "A/2", "B/0", "b/1"]
    assert sorted(["STRASSE/1", "straße/0"], key=natural_key) == ["straße/0", "STRASSE/1"]  # Unicode casefold
    # equal but for leading zeros or case: code point order of the raw ids decides, whatever the input order
    ties = ["1/07", "01/7", "a/1", "A/1", "01/007"]
    for seed in range(5):
        assert sorted(shuffled(ties, seed), key=natural_key) == ["01/007", "01/7", "1/07", "A/1", "a/1"]
    assert len({natural_key(s) for s in ties}) == len(ties)  # a total order: no two ids compare equal


def test_odd_ids_still_compare() -> None:
    odd = ["a", "a0", "a-", "1a", "a1b", "a1", "", "9" * 5000, "٣/1", "2/1", "x\x00y", "x"]
    once = sorted(odd, key=natural_key)  # numbers and text at the same place, huge and non-ASCII digit runs
    assert sorted(reversed(odd), key=natural_key) == once
    assert once.index("2/1") < once.index("٣/1") < once.index("9" * 5000)  # Arabic-Indic 3 is the number 3
    assert once.index("a") < once.index("a0") < once.index("a1") < once.index("a1b")


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Every FineDiving id of :data:`FINEDIVING` with 3 frames: frames 0 and 2 flagged, frame 1 not."""
    st = MaskStore(tmp_path / "n.db")
    ids = shuffled(FINEDIVING)  # registration order must not matter
    st.add_samples([sample(s, 3, split="test" if i % 3 == 0 else "train") for i, s in enumerate(ids)])
    for s in ids:
        reason = "athlete small in frame" if s.startswith("01/") else "one athlete found"
        statuses = ["flagged", "unreviewed", "flagged"]
        writes = [
            MaskWrite(mask=blob_mask(t), status=v, reason=reason if v == "flagged" else None)
            for t, v in enumerate(statuses)
        ]
        st.write_sample_masks(s, writes, author="b")
    yield st
    st.close()


def walk(store: MaskStore, n: int, **filters: str) -> list[tuple[str, int]]:
    """``n`` presses of Next flagged from nowhere."""
    out: list[tuple[str, int]] = []
    here = None
    for _ in range(n):
        here = next_flagged(store, here, "me", **filters)
        assert here is not None
        out.append(here)
    return out


def test_the_queue_lists_samples_in_natural_order(store: MaskStore) -> None:
    assert [r.sample_id for r in queue_rows(store)] == FINEDIVING
    test_ids = [r.sample_id for r in queue_rows(store, split="test", status="has flagged")]
    assert test_ids == [s for s in FINEDIVING if s in set(test_ids)] and test_ids


def test_next_flagged_walks_the_queue_order_frame_by_frame_and_wraps_around(store: MaskStore) -> None:
    queue = [r.sample_id for r in queue_rows(store)]
    steps = walk(store, 2 * len(queue) + 1)
    assert steps == [(s, t) for s in queue for t in (0, 2)] + [(queue[0], 0)]  # then back to the start
    assert next_flagged(store, ("01/2", 2), "me") == ("01/10", 0)  # not "02/1" (code point: "01/10" < "01/2")
    assert next_flagged(store, ("01/2", 0), "me") == ("01/2", 2)  # the same sample's later frame first
    assert next_flagged(store, (queue[-1], 2), "me") == (queue[0], 0)
    assert next_flagged(store, ("01/3", 0), "me") == ("01/10", 0)  # from a sample no longer in the store


def test_next_flagged_follows_the_queue_with_split_reason_and_locks(store: MaskStore) -> None:
    for split in ("train", "test"):
        queue = [r.sample_id for r in queue_rows(store, split=split, status="has flagged")]
        assert [s for s, _ in walk(store, 2 * len(queue), split=split)] == [s for s in queue for _ in (0, 2)]
    small = [r.sample_id for r in queue_rows(store, reason="SMALL in frame")]
    assert small == ["01/1", "01/2", "01/10", "01/11"]
    assert walk(store, 9, reason="small in frame") == [(s, t) for s in small for t in (0, 2)] + [("01/1", 0)]
    acquire_lock(store, "01/10", "alice", ttl_s=600)
    assert next_flagged(store, ("01/2", 2), "me") == ("01/11", 0)  # alice holds 01/10
    assert next_flagged(store, ("01/2", 2), "alice") == ("01/10", 0)  # her own lease is no obstacle
    store.set_status({"01/11/00000.jpg": 1, "01/11/00002.jpg": 1}, "accepted", author="me")
    assert next_flagged(store, ("01/2", 2), "me", reason="small") == ("01/1", 0)  # wrapped: 01/10 held, 01/11 done
