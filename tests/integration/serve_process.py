"""A serving process of its own (own Ray, own Serve) for the durability test: prints READY and
the Ray session folder, then serves until it is killed.

    python serve_process.py TRACKING_URI HISTORY_DB FEEDBACK_DIR PORT
"""

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    tracking_uri, history_db, feedback_dir, port = sys.argv[1:5]
    import ray
    from ray import serve

    from serve_deployments import build_app

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    app = build_app(
        {
            "tracking_uri": tracking_uri,
            "history_db": history_db,
            "feedback_dir": feedback_dir,
            "watch_interval_s": 0,
        }
    )
    serve.run(app, name="llmrec", route_prefix="/")
    session = ray._private.worker._global_node.get_session_dir_path()
    print(f"READY {session}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
