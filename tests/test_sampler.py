"""EpochSampler: the training order is a pure function of (seed, epoch, start batch), sharded
into whole batches, and its endless form is the epochs one after another."""

from __future__ import annotations

from itertools import islice

from segdil.data.sampler import EpochSampler


def one_epoch(epoch: int, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> list[tuple[int, int]]:
    sampler = EpochSampler(10, 2, seed=3, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch, start_batch)
    return list(sampler)


def test_an_epoch_is_whole_batches_of_distinct_samples_and_differs_by_epoch() -> None:
    first, second = one_epoch(0), one_epoch(1)
    assert len(first) == 10 and sorted(index for index, _ in first) == list(range(10))
    assert [index for index, _ in first] != [index for index, _ in second]
    assert one_epoch(0) == first  # a pure function of its arguments


def test_ranks_take_disjoint_blocks_of_each_global_batch() -> None:
    ranks = [one_epoch(0, rank=rank, world_size=2) for rank in (0, 1)]
    assert all(len(rank) == 4 for rank in ranks)  # 10 samples: 2 global batches of 2 x 2, 2 left out
    assert not {index for index, _ in ranks[0]} & {index for index, _ in ranks[1]}


def test_the_endless_order_resumes_mid_epoch_and_runs_on_into_the_next_epochs() -> None:
    endless = EpochSampler(10, 2, seed=3, endless=True)
    endless.set_epoch(4, start_batch=3)
    expected = one_epoch(4, start_batch=3) + one_epoch(5) + one_epoch(6)
    assert list(islice(endless, len(expected))) == expected
    assert len(expected) == 4 + 10 + 10
