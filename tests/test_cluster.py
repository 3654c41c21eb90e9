"""Choosing where computations run: threads, LocalCluster, a scheduler address, SLURM."""

import dask
import dask.array as da
import pytest
from dask.utils import parse_bytes

from metatensor_dask.execution.cluster import ClusterError, check_options, execution, local_sizes


@pytest.fixture
def no_slurm_env(monkeypatch):
    for name in ("SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_NODE", "NCPUS"):
        monkeypatch.delenv(name, raising=False)


def test_local_sizes_from_the_slurm_allocation(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "16")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "32000")  # MiB, for the node
    assert local_sizes() == (4, 4, 32000 * 2**20 // 4)
    assert local_sizes(workers=2) == (2, 8, 16000 * 2**20)
    assert local_sizes(memory_limit="1GiB") == (4, 4, 2**30)  # per worker, explicit wins


def test_local_sizes_from_a_pbs_job(monkeypatch, no_slurm_env):
    monkeypatch.setenv("NCPUS", "6")  # what PBS sets in a job of ncpus=6
    assert local_sizes() == (3, 2, None)


def test_local_sizes_small_machines(monkeypatch, no_slurm_env):
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "3")
    assert local_sizes() == (3, 1, None)  # one worker per core up to 4 cores
    assert local_sizes(workers=5) == (5, 1, None)


@pytest.mark.parametrize(
    ("cluster", "options", "message"),
    [
        ("threads", {"jobs": 2}, "--jobs only applies to batch-system clusters"),
        (
            "local",
            {"jobs": 2},
            r"--jobs only applies to batch-system clusters \(--cluster slurm\|pbs",
        ),
        (
            None,
            {"memory_limit": "1GiB"},
            "--memory-limit needs worker processes: add --cluster local",
        ),
        ("slurm", {"workers": 2}, "--workers does not apply to --cluster slurm: use --jobs"),
        ("tcp://127.0.0.1:1", {"workers": 2}, "do not apply to a running scheduler"),
        ("lcoal", {}, "unknown cluster 'lcoal': use one of threads, local, slurm, pbs, sge"),
        (
            "local",
            {"memory_limit": "lots"},
            "invalid memory limit 'lots': give a size such as '4GiB'",
        ),
    ],
)
def test_options_that_do_not_apply(cluster, options, message):
    with pytest.raises(ClusterError, match=message):
        check_options(cluster, **options)
    with pytest.raises(ClusterError, match=message), execution(cluster, **options):
        pass


def test_threads_by_default():
    with execution(workers=3) as where:
        assert where.client is None
        assert where.description == "threads (3)"
        assert dask.config.get("scheduler") == "threads"
        assert dask.config.get("num_workers") == 3
        assert da.arange(10, chunks=3).sum().compute() == 45


def test_local_cluster_has_memory_limits(no_slurm_env):
    with execution("local", workers=1, memory_limit="512MiB") as where:
        workers = where.client.scheduler_info()["workers"].values()
        assert [w["memory_limit"] for w in workers] == [parse_bytes("512MiB")]
        threads = local_sizes(1)[1]
        threads = "1 thread" if threads == 1 else f"{threads} threads"
        assert where.description == f"LocalCluster (1 worker x {threads}, 512.00 MiB each)"
        assert where.client.compute(da.arange(10, chunks=3).sum()).result() == 45


def test_scheduler_address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        with execution(cluster.scheduler_address) as where:
            assert where.description == f"scheduler {cluster.scheduler_address}"
            assert where.client.compute(da.ones(4, chunks=2).sum()).result() == 4


def test_unreachable_scheduler():
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        with pytest.raises(
            ClusterError, match=r"cannot connect to the dask scheduler at tcp://127\.0\.0\.1:9"
        ):
            with execution("tcp://127.0.0.1:9"):
                pass


def test_slurm_needs_a_job_size():
    pytest.importorskip("dask_jobqueue")
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ClusterError, match=r"set cores and memory of jobqueue\.slurm"):
            with execution("slurm", jobs=1):
                pass
