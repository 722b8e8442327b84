"""The ``transfer`` stage: what fine-tuning did to the samples, measured in ImageNet features.

Compares, at the GAN resolution, the samples of the starting network and of the fine-tuned
network (the same seeds: ``generate`` writes both) with the fine-tuning photos (``prepare``'s
copies, cropped and resized as the trainer saw them) and, when known, the photos the starting
network was trained on (``--start_photos``). Every image is enlarged to 224 px (bicubic) and
embedded by the pooled features of ``superres_tf.features`` ('auto': ImageNet VGG16 when cached,
else ImageNet EfficientNet-Lite0 offline). Distances are cosine distances of those embeddings.

Results:
  * ``nearest``: each fine-tuned sample's nearest photo among all photos the network has seen
    (fine-tuning photos and start photos): the memorisation check, shown beside the samples;
  * ``distance``: the mean distance from a sample to its nearest fine-tuning photo, for the start
    and the fine-tuned samples (lower = closer to the fine-tuning photos);
  * ``share``: the fraction of samples whose nearest photo is a fine-tuning photo (with start
    photos), before and after.
"""

import os

import numpy as np
from PIL import Image

from pipeline import PipelineError
from pipeline.records import Stage, StageResult

EMBED_SIZE = 224


def centre_square(image: Image.Image) -> Image.Image:
    """The centre square of an image (the part of a photo the GAN dataset keeps)."""
    w, h = image.size
    side = min(w, h)
    return image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


def load_images(paths, size: int) -> np.ndarray:
    """[N, size, size, 3] uint8 of image files, square-cropped and resized as the GAN dataset does
    (:func:`stylegan_tl.dataset.load_image`)."""
    from stylegan_tl.dataset import load_image
    return np.stack([load_image(path, size).transpose(1, 2, 0) for path in paths])


def _pixels(path: str) -> np.ndarray:
    """HWC uint8 RGB of an image the pipeline wrote."""
    from superres_tf.images import open_image
    with open_image(path)[0] as image:
        return np.asarray(image.convert("RGB"))


def embed(backbone, images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, D] L2-normalised pooled features of images enlarged to 224 px."""
    import tensorflow as tf
    batch = tf.image.resize(tf.convert_to_tensor(images, tf.float32) / 255.0, (EMBED_SIZE, EMBED_SIZE),
                            method="bicubic")
    features = np.concatenate([np.asarray(backbone.embed(tf.clip_by_value(batch[i:i + 16], 0.0, 1.0)))
                               for i in range(0, len(images), 16)])
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def nearest(queries: np.ndarray, references: np.ndarray):
    """(index, cosine distance) of each query's nearest reference (rows L2-normalised)."""
    distances = 1.0 - queries @ references.T
    index = np.argmin(distances, axis=1)
    return index, distances[np.arange(len(queries)), index]


def compare(backbone, start_samples, tuned_samples, tune_photos, start_photos=None) -> dict:
    """The stage's numbers from uint8 image stacks (see the module docstring)."""
    start, tuned, tune = (embed(backbone, a) for a in (start_samples, tuned_samples, tune_photos))
    seen = tune if start_photos is None else np.concatenate([tune, embed(backbone, start_photos)])
    result = {"distance": {"start": float(nearest(start, tune)[1].mean()),
                           "finetuned": float(nearest(tuned, tune)[1].mean())}}
    index, distance = nearest(tuned, seen)
    result["nearest"] = [{"photo": int(i), "distance": float(d)} for i, d in zip(index, distance)]
    if start_photos is not None:
        result["share"] = {name: float(np.mean(nearest(e, seen)[0] < len(tune)))
                           for name, e in (("start", start), ("finetuned", tuned))}
    return result


def _transfer(cfg, ws, resume):
    from stylegan_tl.dataset import list_image_files
    from superres_tf.features import load_backbone
    samples, samples_start = ws.require("generate", "samples"), ws.output("generate", "samples_start")
    if not samples_start:
        return StageResult({}, {"skipped": "no starting network (trained from scratch)"})
    names = sorted(n for n in os.listdir(samples) if n.endswith(".png"))
    if not names or not all(os.path.exists(os.path.join(samples_start, n)) for n in names):
        raise PipelineError(f"{samples_start}: the starting network's samples do not match {samples}")
    tuned, start = (np.stack([_pixels(os.path.join(folder, n)) for n in names]) for folder in (samples, samples_start))
    resolution = tuned.shape[1]
    tune_paths = list_image_files(ws.require("prepare", "prepared"))
    tuning = os.path.realpath(cfg.data_dir)
    start_paths = [p for p in (list_image_files(cfg.start_photos) if cfg.start_photos else [])
                   if os.path.commonpath([os.path.realpath(p), tuning]) != tuning]  # each photo once
    backbone = load_backbone("auto")
    result = compare(backbone, start, tuned, load_images(tune_paths, resolution),
                     load_images(start_paths, resolution) if start_paths else None)
    photos = tune_paths + start_paths
    result["nearest"] = [dict(n, sample=ws.rel(os.path.join(samples, name)), photo=ws.rel(photos[n["photo"]]))
                         for n, name in zip(result["nearest"], names)]
    result.update(features=backbone.source, backbone=backbone.name, num_finetune_photos=len(tune_paths),
                  num_start_photos=len(start_paths))
    warnings = [] if backbone.pretrained else [f"transfer figures use RANDOM features ({backbone.source})"]
    return StageResult({}, result, warnings)


TRANSFER = Stage(
    "transfer",
    params=lambda cfg: {"start_photos": cfg.start_photos},
    inputs=lambda cfg, ws: {"samples": ws.require("generate", "samples"),
                            "samples_start": ws.output("generate", "samples_start"),
                            "prepared": ws.require("prepare", "prepared"),
                            "start_photos": cfg.start_photos},
    run=_transfer)
