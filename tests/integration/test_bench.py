"""`make bench`'s machinery in its quick sizes, on the test PostgreSQL: the figures come from
messages really completed, and a queue that runs dry is reported, not a crash or a capped figure."""

from __future__ import annotations

import asyncpg
import pytest

from bench import api_bench, common, http_yardstick, pgbench_limit, pgqueuer_bench, pickup, reference, soak


async def test_limit_counts_the_messages_it_completed(db_dsn: str) -> None:
    await common.load_messages(db_dsn, 2_000)
    await common.vacuum(db_dsn)

    done = await pgbench_limit.run(db_dsn, clients=2, seconds=1)

    assert done.completed > 0
    assert done.loaded == 2_000
    assert done.completed + done.left == 2_000  # every message either completed or still queued
    # The database's own cost of the run: its CPU, WAL and buffers, all spent, none of them absurd.
    assert 0 < done.cpu_us_per_msg < 1_000_000
    assert 100 < done.wal_bytes_per_msg < 100_000
    assert 1 < done.buffers_per_msg < 10_000
    assert await common.count_status(db_dsn, "SENT") == done.completed
    assert done.msgs_per_s == pytest.approx(done.completed / done.seconds)
    assert done.seconds >= 1.0


async def test_limit_survives_an_empty_queue_and_says_it_ran_dry(db_dsn: str) -> None:
    # 25 messages: the third claim of 10 comes back short, then every claim is empty for the rest
    # of the second. pgbench used to abort on the empty claim (malformed array literal: "").
    await common.load_messages(db_dsn, 25)

    done = await pgbench_limit.run(db_dsn, clients=2, seconds=1)

    assert (done.completed, done.left) == (25, 0)
    with pytest.raises(common.QueueRanDry, match="only 0 of 25 queued messages were left"):
        done.check("L")


async def test_reference_lifecycle_counts_attempt_rows_and_survives_an_empty_queue(db_dsn: str) -> None:
    await reference.prepare(db_dsn, 25)

    done = await reference.run(db_dsn, clients=2, seconds=1)

    assert (done.completed, done.loaded, done.left) == (25, 25, 0)
    with pytest.raises(common.QueueRanDry):
        done.check("L_ref")


async def test_a_run_that_kept_enough_queue_passes_the_check() -> None:
    done = common.Throughput(
        completed=900, seconds=1.0, loaded=1_000, left=100, cpu_seconds=0.09, wal_bytes=900_000, buffers=45_000
    )
    assert done.check("L").metrics() == {
        "msgs_per_s": 900.0,
        "completed": 900,
        "left": 100,
        "cpu_us_per_msg": pytest.approx(100.0),
        "wal_bytes_per_msg": 1000.0,
        "buffers_per_msg": 50.0,
    }
    with pytest.raises(common.QueueRanDry):
        common.Throughput(completed=901, seconds=1.0, loaded=1_000, left=99).check("L")
    with pytest.raises(RuntimeError, match="no message completed"):
        common.Throughput(completed=0, seconds=1.0, loaded=1_000, left=1_000).check("L")


async def test_pgqueuer_drains_with_several_dequeuers(db_dsn: str) -> None:
    result = await pgqueuer_bench.drain(db_dsn, 300)

    assert result["completed"] == 300
    assert result["msgs_per_s"] > 0


async def test_the_soak_drains_its_queue_and_reports_both_ends_and_the_tables(db_dsn: str) -> None:
    # 40,000 to drain: each tenth spans several of the soak's 50 ms samples (a shorter one is refused)
    # up to about 40,000 msg/s, three times this machine's pace.
    await soak.prepare(db_dsn, 50_000, 40_000)
    assert await common.count_status(db_dsn, "SENT") == 10_000
    assert await common.count_status(db_dsn, "QUEUED") == 40_000

    figures = await soak.run(db_dsn, 40_000)

    assert await common.count_status(db_dsn, "SENT") == 50_000  # the whole queue, nothing more
    assert figures["first_msgs_per_s"] > 0
    assert figures["last_msgs_per_s"] > 0
    assert figures["last_over_first"] == pytest.approx(figures["last_msgs_per_s"] / figures["first_msgs_per_s"])
    assert figures["dead_after"] > figures["dead_before"] or figures["vacuums_during"] > 0
    assert figures["table_mb_after"] >= figures["table_mb_before"] > 0
    assert figures["attempt_mb_after"] > figures["attempt_mb_before"] > 0


async def test_a_soak_whose_drain_is_not_part_of_its_table_is_refused(db_dsn: str) -> None:
    with pytest.raises(ValueError, match="must be part of the table"):
        await soak.prepare(db_dsn, 1_000, 1_000)


async def test_pickup_parts_follow_every_message_from_enqueue_to_the_provider_call(db_dsn: str) -> None:
    figures = await pickup.b3_latency(db_dsn, rate=20, seconds=1)

    assert figures["messages"] == 20  # every message enqueued reached the provider
    assert figures["early"] < 20, "no message was picked up through its NOTIFY"
    for part in ("commit", "notify", "wake", "claim", "dispatch"):
        assert 0 < figures[f"{part}_p50_ms"] <= figures[f"{part}_p95_ms"], part
    assert figures["notify_p50_ms"] + figures["claim_p50_ms"] < figures["max_ms"]


async def test_the_commit_floor_measures_committed_inserts(db_dsn: str) -> None:
    figures = await pickup.commit_floor(db_dsn, rate=50, seconds=0.4)

    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    conn = await asyncpg.connect(db_dsn)
    try:  # the scratch table is gone again
        assert await conn.fetchval("SELECT to_regclass('bench_commit_floor')") is None
    finally:
        await conn.close()


async def test_the_api_bench_runs_the_products_own_create_claim_and_completion(db_dsn: str) -> None:
    # Its database phases call the store's functions, so a new column of the API's insert or the
    # worker's completion cannot break `make bench` after three minutes of other measures.
    figures = await api_bench.run(db_dsn, api_bench.Sizes(single=40, batches=4))

    assert set(figures) == {
        "db_enqueue_single_msgs_per_s",
        "db_enqueue_batch_msgs_per_s",
        "db_lifecycle_msgs_per_s",
        "api_single_msgs_per_s",
        "api_batch_msgs_per_s",
        "api_single_p50_ms",
        "api_single_p99_ms",
    }
    assert all(value > 0 for value in figures.values()), figures
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT m.status, count(*) AS messages, count(a.id) AS attempts FROM outbound_message m"
            " LEFT JOIN outbound_attempt a ON a.outbound_message_id = m.id WHERE m.correlation_id = 'lifecycle'"
            " GROUP BY m.status"
        )
        created = await conn.fetchval("SELECT count(*) FROM outbound_message WHERE correlation_id = 'single'")
    finally:
        await conn.close()
    # Every lifecycle message was created, claimed and completed once, with its one attempt row.
    assert [tuple(row) for row in rows] == [("SENT", 4 * api_bench.BATCH, 4 * api_bench.BATCH)]
    assert created == 40


def test_a_soak_rate_comes_from_the_counts_its_samples_read_and_a_too_short_tenth_is_refused() -> None:
    samples = [(0.0, 0), (0.05, 0), (0.10, 300), (0.15, 800), (0.20, 1_300), (0.25, 1_800)]
    # From the first sample at >= 100 (300 read at 0.10 s) to the first at >= 1,000 (1,300 at 0.20 s).
    assert soak._rate_between(samples, 100, 1_000) == pytest.approx(1_000 / 0.10)
    with pytest.raises(ValueError, match="too short to time"):
        soak._rate_between(samples, 900, 1_000)  # 800 -> 1,300: one sample interval


@pytest.mark.parametrize("processes", [1, 2])
async def test_the_http_yardstick_times_provider_calls_bounded_by_the_sandboxs_latency(processes: int) -> None:
    figures = await http_yardstick.run(300, in_flight=30, latency_ms=20, processes=processes)

    assert figures["msgs_per_s"] > 0
    # Each call waited the sandbox's latency at least; 30 at a time bound the rate by 30 / 20 ms.
    assert figures["mean_ms"] >= 20
    assert figures["msgs_per_s"] <= 30 / 0.020
