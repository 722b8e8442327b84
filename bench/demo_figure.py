"""The demo's transfer figure from a finished pipeline work dir (the figure of BENCHMARKS.md).

Rows, one column per seed: the starting network's sample, the fine-tuned sample, its nearest
training photo (the transfer stage's memorisation check; centre square at the GAN resolution),
each enlarged x``zoom`` with nearest neighbour, then the enhanced sample resized to the same size.

    python bench/demo_figure.py --work_dir=runs/demo --out=docs/img/demo_transfer.jpg
"""

import json
import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.records import Workspace  # noqa: E402
from pipeline.transfer import load_images  # noqa: E402
from superres_tf import conventions  # noqa: E402
from superres_tf.images import image_grid, read_image, write_image  # noqa: E402

flags.DEFINE_string("work_dir", "runs/demo", "A pipeline work dir whose report stage has completed.")
flags.DEFINE_string("out", "docs/img/demo_transfer.jpg", "Figure path (.jpg or .png).")
flags.DEFINE_integer("zoom", 4, "Nearest-neighbour enlargement of the GAN-resolution rows.")
FLAGS = flags.FLAGS


def main():
    ws = Workspace(FLAGS.work_dir)
    summary_path = ws.path("summary.json")
    if not os.path.isfile(summary_path):
        raise conventions.ProjectError(f"{summary_path}: not found (run the pipeline's report stage first)")
    with open(summary_path) as handle:
        summary = json.load(handle)
    nearest = (summary.get("transfer") or {}).get("nearest")
    start_folder = ws.output("generate", "samples_start")
    if not nearest or not start_folder:
        raise conventions.ProjectError(f"{summary_path}: no transfer results (a run from a starting pickle has them)")
    samples = [ws.path(item["sample"]) for item in nearest]
    # Every row through the GAN dataset's reader (centre square, resized as the trainer saw it).
    resolution = read_image(samples[0])[0].shape[1]
    starts = [os.path.join(start_folder, os.path.basename(p)) for p in samples]
    photos = [ws.path(item["photo"]) for item in nearest]
    zoom = lambda a: a.repeat(FLAGS.zoom, 1).repeat(FLAGS.zoom, 2)  # noqa: E731  (NHWC, nearest neighbour)
    rows = [zoom(load_images(paths, resolution)) for paths in (starts, samples, photos)]
    enhanced = {os.path.basename(sample): ws.path(out) for sample, out in summary["pairs"]}
    if all(os.path.basename(p) in enhanced for p in samples):
        rows.append(load_images([enhanced[os.path.basename(p)] for p in samples], resolution * FLAGS.zoom))
    write_image(FLAGS.out, image_grid(np.concatenate(rows), cols=len(samples)))
    yield f"{FLAGS.out}: rows start / fine-tuned / nearest training photo" + (" / enhanced" if len(rows) == 4 else "")


if __name__ == "__main__":
    conventions.run(main)
