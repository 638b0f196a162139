"""Review queue edges: samples without frames, every status filter, unknown filters, Unicode ids and reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from _store_fixtures import blob_mask, named_sample

from annotator_app.review_queue import QUEUE_FILTERS, natural_key, next_flagged, queue_rows
from hmtools.errors import InputError
from hmtools.schema import Sample
from hmtools.store import MaskStore
from hmtools.store_types import MaskWrite


def sample(sample_id: str, n: int, split: str = "train") -> Sample:
    return named_sample(sample_id, n, split, dataset="aqa7")


def write(store: MaskStore, sample_id: str, statuses: list[str]) -> None:
    store.write_sample_masks(
        sample_id, [MaskWrite(mask=blob_mask(t), status=s) for t, s in enumerate(statuses)], author="b"
    )


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``empty/001`` has no frames (video not extracted); ``done/001`` every frame accepted or rejected;
    ``todo/001`` no mask yet; ``rejected/001`` every frame rejected."""
    st = MaskStore(tmp_path / "q.db")
    st.add_samples([sample("empty/001", 0), sample("done/001", 3), sample("todo/001", 2), sample("rejected/001", 2)])
    write(st, "done/001", ["accepted", "accepted", "rejected"])
    write(st, "rejected/001", ["rejected", "rejected"])
    yield st
    st.close()


def ids(rows: list) -> list[str]:  # type: ignore[type-arg]
    return [r.sample_id for r in rows]


def test_a_sample_without_frames_is_not_done_but_listed_as_no_frames(store: MaskStore) -> None:
    assert ids(queue_rows(store, status="done")) == ["done/001", "rejected/001"]
    assert ids(queue_rows(store, status="no frames")) == ["empty/001"]
    assert "empty/001" not in ids(queue_rows(store, status="has unreviewed"))  # nothing there to review
    row = next(r for r in queue_rows(store) if r.sample_id == "empty/001")
    assert row.as_list()[3:9] == [0, 0, 0, 0, 0, 0]


def test_every_filter_of_the_dropdown_is_understood_and_an_unknown_one_is_refused(store: MaskStore) -> None:
    everything = ids(queue_rows(store))
    assert everything == ["done/001", "empty/001", "rejected/001", "todo/001"]
    for status in QUEUE_FILTERS:
        assert set(ids(queue_rows(store, status=status))) <= set(everything)
    assert ids(queue_rows(store, status="has unreviewed")) == ["todo/001"]
    assert ids(queue_rows(store, status="has rejected")) == ["done/001", "rejected/001"]
    assert ids(queue_rows(store, status="")) == ids(queue_rows(store, status=None)) == everything  # a cleared filter
    with pytest.raises(InputError, match=r"unknown queue filter 'flagged'; use one of: all, has flagged"):
        queue_rows(store, status="flagged")  # a typo no longer lists every sample silently


def test_unicode_ids_keep_one_order_in_the_queue_and_in_next_flagged(tmp_path: Path) -> None:
    names = ["Zürich/0", "Zurich/0", "zeta/0", "Ärger/0", "日本/0"]
    with MaskStore(tmp_path / "u.db") as st:
        st.add_samples([sample(n, 2, split="test" if n == "zeta/0" else "train") for n in names])
        for n in names:
            write(st, n, ["unreviewed", "flagged"])
        st.set_status({"Ärger/0/00001.jpg": 1}, "flagged", author="r", reason="Überlappung zweier Springer")
        order = ids(queue_rows(st))
        assert order == sorted(names, key=natural_key)  # the queue's natural order (casefolded text)
        walked, here = [], None
        for _ in names:
            here = next_flagged(st, here, "me")
            assert here is not None
            walked.append(here[0])
        assert walked == order  # Next flagged walks the samples in the queue's order
        assert ids(queue_rows(st, split="test", status="has flagged")) == ["zeta/0"]
        assert ids(queue_rows(st, reason="ÜBERLAPPUNG")) == ["Ärger/0"]
        assert next_flagged(st, None, "me", reason="  überlappung ") == ("Ärger/0", 1)
