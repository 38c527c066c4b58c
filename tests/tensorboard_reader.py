"""Reads a run's TensorBoard files with TensorBoard's own loader and prints every scalar as JSON.

Usage: python tests/tensorboard_reader.py RUN_DIR
Output: {slug: {tag: [[step, value], ...]}} for each directory RUN_DIR/tensorboard/<slug>/.

The Rust tests use this to check that what tensorboard-rs writes is what TensorBoard itself reads
back: the real consumer, rather than a parser of our own that could share our mistakes.
"""

import json
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: tensorboard_reader.py RUN_DIR")
    root = Path(sys.argv[1]) / "tensorboard"
    out = {}
    for logdir in sorted(p for p in root.iterdir() if p.is_dir()):
        # scalars=0 loads every point; the default keeps a 1,000-point sample per tag.
        acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
        acc.Reload()
        out[logdir.name] = {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)]
            for tag in sorted(acc.Tags()["scalars"])
        }
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
