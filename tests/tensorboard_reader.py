"""Reads TensorBoard files with TensorBoard's own code and prints what it finds as JSON.

Usage:
  python tests/tensorboard_reader.py RUN_DIR
      {slug: {"scalars": {tag: [[step, value], ...]}, "hparams": {name: value}, "status": ...}}
      for each directory RUN_DIR/tensorboard/<slug>/ (TensorBoard's EventAccumulator and its
      HParams plugin's own protobuf types).
  python tests/tensorboard_reader.py --http LOGDIR
      starts TensorBoard's server on LOGDIR and prints what its HTTP API answers:
      {"runs": [...], "tags": {run: [tag, ...]}, "sessions": [{"name":, "hparams":, "metrics":}]}

The Rust tests use this to check that what we write is what TensorBoard itself reads back: the
real consumer, rather than a parser of our own that could share our mistakes.
"""

import json
import sys
import urllib.request
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def value_of(v):
    kind = v.WhichOneof("kind")
    return {"number_value": v.number_value, "string_value": v.string_value,
            "bool_value": v.bool_value}.get(kind)


def read_run(root: Path) -> dict:
    out = {}
    for logdir in sorted(p for p in (root / "tensorboard").iterdir() if p.is_dir()):
        # scalars=0 loads every point; the default keeps a 1,000-point sample per tag.
        acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
        acc.Reload()
        entry = {
            "scalars": {
                tag: [[e.step, e.value] for e in acc.Scalars(tag)]
                for tag in sorted(acc.Tags()["scalars"])
            }
        }
        for tag, content in acc.PluginTagToContent("hparams").items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if tag == "_hparams_/session_start_info":
                entry["hparams"] = {k: value_of(v) for k, v in data.session_start_info.hparams.items()}
            elif tag == "_hparams_/session_end_info":
                entry["status"] = data.session_end_info.status
        out[logdir.name] = entry
    return out


def read_http(logdir: str) -> dict:
    from tensorboard import program

    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", logdir, "--port", "0", "--host", "127.0.0.1",
                       "--load_fast", "false", "--reload_interval", "0"])
    url = tb.launch().rstrip("/")

    def get(path, body=None):
        req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    # TensorBoard loads the logdir in the background: wait until it lists runs and that list
    # has stopped growing
    import time
    deadline = time.time() + 120
    seen = None
    while time.time() < deadline:
        runs = get("/data/runs")
        if runs and runs == seen:
            break
        seen = runs
        time.sleep(1.0)
    tags = get("/data/plugin/scalars/tags")
    experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
    groups = get("/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 1000})
    sessions = []
    for g in groups.get("sessionGroups", []):
        for s in g.get("sessions", []):
            sessions.append({
                "name": s["name"],
                "hparams": g.get("hparams", {}),
                "metrics": {f'{m["name"].get("group", "")}:{m["name"]["tag"]}': m.get("value")
                            for m in s.get("metricValues", [])},
            })
    return {
        "runs": sorted(get("/data/runs")),
        "tags": {run: sorted(t) for run, t in tags.items()},
        "hparam_names": sorted(h["name"] for h in experiment.get("hparamInfos", [])),
        "sessions": sorted(sessions, key=lambda s: s["name"]),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        out = read_http(sys.argv[2])
    elif len(sys.argv) == 2:
        out = read_run(Path(sys.argv[1]))
    else:
        sys.exit("usage: tensorboard_reader.py RUN_DIR | --http LOGDIR")
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
