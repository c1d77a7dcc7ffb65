"""Run by test_multinode.py in its own process: a local two-node Ray cluster (head and one
worker node, different resources), the finetune job with one training worker per node."""

import sys

import finetune  # jobs/finetune.py
import ray
from ray.cluster_utils import Cluster


def main(args: list[str]) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        return finetune.main(args)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
