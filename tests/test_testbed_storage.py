"""`semhpc bench io` on a compute node of the multi-node test cluster (hpc/testbed/): the same
SEM TIFFs on the shared volume (/scratch, what NFS or Lustre is on a real cluster) and on the
node's local disk (/tmp in its container) are read and decoded, both paths are reported side by
side. The figures themselves are benchmarks/storage_placement.py's, not asserted here."""

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.testbed]

SHARED = "/scratch/semhpc/io-tiffs"
LOCAL = "/tmp/io-tiffs"


def test_bench_io_reads_the_shared_volume_and_the_nodes_local_disk(testbed):
    testbed.semhpc("/scratch/semhpc", "synth", "io-tiffs", "--per-class", "2", "--size", "256x192", "--seed", "5")
    testbed.run("rm", "-rf", LOCAL, node="node1")
    testbed.run("cp", "-r", SHARED, LOCAL, node="node1")
    out = testbed.run("semhpc", "bench", "io", SHARED, LOCAL, "--readers", "1,2", "--json", node="node1",
                      timeout=900)
    doc = json.loads(out.stdout)
    assert doc["kind"] == "bench_io_compare"
    assert [d["path"] for d in doc["paths"]] == [SHARED, LOCAL]
    for path_doc in doc["paths"]:
        assert path_doc["file_kind"] == "tiff" and path_doc["files"] == 20
        assert [(row["readers"], row["images"]) for row in path_doc["rows"]] == [(1, 20), (2, 20)]
        assert all(row["images_per_sec"] > 0 and row["mb_per_sec"] > 0 for row in path_doc["rows"])
    assert [row["readers"] for row in doc["relative"]] == [1, 2]
    assert all(set(row["images_per_sec_vs_first"]) == {SHARED, LOCAL} for row in doc["relative"])
    for row in doc["relative"]:  # shown with -s; benchmarks/storage_placement.py measures it
        print(f"bench io on node1, {row['readers']} reader(s): local / shared "
              f"{row['images_per_sec_vs_first'][LOCAL]:.2f}")
    # /tmp is the node's own: the other compute node does not see the copy, the shared volume it does.
    assert testbed.run("test", "-e", LOCAL, node="node2", check=False).returncode != 0
    assert testbed.run("test", "-d", SHARED, node="node2").returncode == 0
