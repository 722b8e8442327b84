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
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.transfer import centre_square  # noqa: E402
from superres_tf import conventions  # noqa: E402
from superres_tf.images import image_grid, write_image  # noqa: E402

flags.DEFINE_string("work_dir", "runs/demo", "A pipeline work dir whose report stage has completed.")
flags.DEFINE_string("out", "docs/img/demo_transfer.jpg", "Figure path (.jpg or .png).")
flags.DEFINE_integer("zoom", 4, "Nearest-neighbour enlargement of the GAN-resolution rows.")
FLAGS = flags.FLAGS


def _cell(path, side, resample):
    image = centre_square(Image.open(path).convert("RGB"))
    return np.asarray(image.resize((side, side), resample))


def main():
    summary_path = os.path.join(FLAGS.work_dir, "summary.json")
    if not os.path.isfile(summary_path):
        raise conventions.ProjectError(f"{summary_path}: not found (run the pipeline's report stage first)")
    with open(summary_path) as handle:
        summary = json.load(handle)
    transfer = summary.get("transfer") or {}
    if "nearest" not in transfer:
        raise conventions.ProjectError(f"{summary_path}: no transfer results (a run from a starting pickle has them)")
    at = lambda path: os.path.join(FLAGS.work_dir, path)  # noqa: E731  (records keep paths relative to it)
    samples = [at(item["sample"]) for item in transfer["nearest"]]
    resolution = Image.open(samples[0]).size[0]
    side = resolution * FLAGS.zoom
    rows = [[_cell(os.path.join(os.path.dirname(p) + "_start", os.path.basename(p)), side, Image.NEAREST)
             for p in samples],
            [_cell(p, side, Image.NEAREST) for p in samples],
            [_cell(at(item["photo"]), resolution,
                   Image.LANCZOS).repeat(FLAGS.zoom, 0).repeat(FLAGS.zoom, 1) for item in transfer["nearest"]]]
    enhanced = {os.path.basename(sample): at(out) for sample, out in summary["pairs"]}
    if all(os.path.basename(p) in enhanced for p in samples):
        rows.append([_cell(enhanced[os.path.basename(p)], side, Image.LANCZOS) for p in samples])
    write_image(FLAGS.out, image_grid(np.stack([cell for row in rows for cell in row]), cols=len(samples)))
    yield f"{FLAGS.out}: rows start / fine-tuned / nearest training photo" + (" / enhanced" if len(rows) == 4 else "")


if __name__ == "__main__":
    conventions.run(main)
