"""``report.html`` (one self-contained file) and ``summary.json`` from the stage records.

The figure follows the article: GAN samples in a row, the same samples after super-resolution
below, and zoomed crops side by side (nearest-neighbour enlargement of a crop of the sample next
to the same region of the enhanced image). Training curves are inline SVG drawn here from the
logged scalars; images are embedded as base64 PNG.
"""

import base64
import glob
import html
import io
import json
import math
import os
from typing import Dict, List, Tuple

from PIL import Image

from pipeline.records import format_seconds
from pipeline.transfer import centre_square

Series = List[Tuple[float, float]]
_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-top:0} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}
figure{margin:0;text-align:center;font-size:12px}
.px{image-rendering:pixelated}
.warn{background:#fff3cd;border:1px solid #e0b400;padding:8px 16px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
"""


def read_scalars(log_dir: str) -> Dict[str, Series]:
    """Scalars logged under ``log_dir``: ``{tag: [(step, value), ...]}`` sorted by step.

    Reads TensorBoard event files (``events.out.tfevents.*``, any depth; TF2 tensor summaries and
    TF1 simple values). Tags of sub-folders are prefixed with the folder (``'train/loss'``) unless
    they already start with it. A step logged twice (a resumed run repeats the steps after its
    last snapshot) keeps the value of the newest event file.
    """
    import tensorflow as tf  # only the report of a run with training logs needs it
    scalars: Dict[str, Dict[int, float]] = {}
    pattern = os.path.join(log_dir, "**", "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern, recursive=True)):
        folder = os.path.relpath(os.path.dirname(path), log_dir)
        folder = "" if folder == "." else folder.replace(os.sep, "/") + "/"
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and not value.tensor.string_val:
                    number = tf.make_ndarray(value.tensor)
                    if number.size != 1:
                        continue
                    number = float(number.reshape(()))
                else:
                    continue
                tag = value.tag if value.tag.startswith(folder) else folder + value.tag
                scalars.setdefault(tag, {})[event.step] = float(number)
    return {tag: sorted(points.items()) for tag, points in scalars.items()}


def svg_chart(title: str, points: Series, width: int = 320, height: int = 180) -> str:
    """A small line chart of ``points`` (step, value) as an inline ``<svg>`` element."""
    finite = [(x, y) for x, y in points if math.isfinite(y)]
    left, right, top, bottom = 52, 10, 22, 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'style="background:#fafafa;border:1px solid #ddd">',
             f'<text x="{width / 2}" y="15" font-size="12" text-anchor="middle">'
             f'{html.escape(title)}</text>']
    if finite:
        xs, ys = [p[0] for p in finite], [p[1] for p in finite]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
        sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="#1f77b4"/>'
                  for x, y in (finite if len(finite) < 10 else [])]
        parts += [
            f'<rect x="{left}" y="{top}" width="{width - left - right}" '
            f'height="{height - top - bottom}" fill="none" stroke="#bbb"/>',
            f'<polyline points="{coords}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>',
            f'<text x="{left - 4}" y="{top + 9}" font-size="10" text-anchor="end">{y1:.4g}</text>',
            f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end">'
            f'{y0:.4g}</text>',
            f'<text x="{left}" y="{height - 8}" font-size="10">{x0:g}</text>',
            f'<text x="{width - right}" y="{height - 8}" font-size="10" text-anchor="end">'
            f'{x1:g}</text>']
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" font-size="11" '
                     'text-anchor="middle">no finite values</text>')
    parts.append("</svg>")
    return "".join(parts)


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image: Image.Image, caption: str, pixelated: bool = False, width: int = 0) -> str:
    """A captioned embedded image, ``width`` px wide (0: the width of its container)."""
    style = f"width:{width}px" if width else "width:100%"
    cls = ' class="px"' if pixelated else ""
    return (f'<figure><img{cls} src="{_data_uri(image)}" style="{style}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def zoom_pair(sample: Image.Image, enhanced: Image.Image, fraction: float = 0.25,
              size: int = 256) -> Tuple[Image.Image, Image.Image]:
    """The central ``fraction`` of both images, each enlarged to ``size`` px square.

    The sample's crop is enlarged with nearest neighbour (its real pixels); the enhanced image's
    crop covers the same region of the scene.
    """
    def crop(image, resample):
        w, h = image.size
        cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        return image.crop(box).resize((size, size), resample)
    return crop(sample, Image.NEAREST), crop(enhanced, Image.LANCZOS)


def _load(path: str) -> Image.Image:
    """An image the pipeline wrote, opened with the readers' rules (allowed formats, size caps)."""
    from superres_tf.images import open_image
    with open_image(path)[0] as image:
        return image.convert("RGB")


def _figure(pairs: List[Tuple[str, str]], starts: List[str] = (), per_row: int = 8) -> str:
    """The article's figure: (the starting network's samples of the same seeds,) the fine-tuned
    samples, and their enhanced versions (``per_row`` columns), then zoomed crops of the first
    four side by side."""
    samples = [_load(s) for s, _ in pairs]
    enhanced = [_load(e) for _, e in pairs]
    before = [_load(s) for s in starts] if len(starts) == len(pairs) else []
    rows = ([("before fine-tuning", before, True)] if before else []) + [
        ("fine-tuned" if before else "sample", samples, True), ("enhanced", enhanced, False)]
    out = ['<h2>GAN samples before and after fine-tuning and super-resolution</h2>' if before else
           '<h2>GAN samples before and after super-resolution</h2>',
           '<p>' + (f'Top: the starting network\'s samples ({samples[0].size[0]} px). Middle: the fine-tuned '
                    'network\'s samples of the same seeds. ' if before else
                    f'Top: GAN samples ({samples[0].size[0]} px). ')
           + 'Samples are shown enlarged with nearest neighbour. '
           f'Bottom: the fine-tuned samples after super-resolution ({enhanced[0].size[0]} px).</p>']
    columns = min(per_row, len(pairs))
    for start in range(0, len(pairs), per_row):
        chunk = range(start, min(start + per_row, len(pairs)))
        out.append(f'<div style="display:grid;grid-template-columns:repeat({columns},'
                   'minmax(0,256px));gap:6px;margin-bottom:16px">')
        for label, images, pixelated in rows:
            out += [_img(images[i], f"{os.path.basename(pairs[i][0])} {label}", pixelated=pixelated)
                    for i in chunk]
        out.append("</div>")
    out.append('<h2>Zoomed crops (centre quarter)</h2><div class="row">')
    for (path, _), sample, enh in list(zip(pairs, samples, enhanced))[:4]:
        before, after = zoom_pair(sample, enh)
        name = os.path.basename(path)
        out.append('<div class="row" style="margin-right:18px">'
                   + _img(before, f"{name}: sample (nearest)", pixelated=True, width=256)
                   + _img(after, f"{name}: enhanced", width=256) + '</div>')
    out.append("</div>")
    return "\n".join(out)


def _table(rows: List[Tuple[str, object]], header: Tuple[str, ...] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def _metrics_section(metrics: dict) -> str:
    if not metrics.get("protocols"):
        return "<h2>Super-resolution metrics</h2><p>No metrics (no held-out photos).</p>"
    rows = []
    for protocol, scores in metrics["protocols"].items():
        gain = scores["model_psnr"] - scores["bicubic_psnr"]
        rows += [(protocol, "model", f"{scores['model_psnr']:.2f}", f"{gain:+.2f}",
                  f"{scores['model_ssim']:.4f}"),
                 (protocol, "bicubic", f"{scores['bicubic_psnr']:.2f}", "",
                  f"{scores['bicubic_ssim']:.4f}")]
    return ("<h2>Super-resolution metrics on held-out photos</h2>"
            f"<p>{metrics['num_images']} held-out photos ({html.escape(metrics['source'])}), "
            f"x{metrics['scale']}: each photo is degraded, then restored by the model or by "
            "bicubic upscaling. PSNR and SSIM on Y (BT.601), border crop of the scale.</p>"
            + _table(rows, ("degradation", "method", "PSNR-Y (dB)", "gain (dB)", "SSIM-Y")))


def _gan_metrics_section(metrics: dict) -> str:
    """The GAN metrics computed in the fine-tuning run (none: no section)."""
    if not metrics:
        return ""
    rows = [(name, f"{m['value']:.4g}", m.get("snapshot", ""), m.get("num_fakes", ""), m.get("num_reals", ""),
             m.get("features", "")) for name, m in sorted(metrics.items())]
    return ("<h2>GAN metrics</h2><p>Newest value of each metric computed in the fine-tuning run "
            "(<code>metric-&lt;name&gt;.jsonl</code>; fid/kid on Keras InceptionV3, comparable within this "
            "package, not with papers; fd_/kd_ on the offline backbone).</p>"
            + _table(rows, ("metric", "value", "snapshot", "fakes", "reals", "features")))


def _transfer_section(transfer: dict, resolve) -> str:
    """The transfer stage's numbers and each fine-tuned sample beside its nearest training photo."""
    if not transfer or "distance" not in transfer:
        return ""
    d = transfer["distance"]
    rows = [("mean distance to the nearest fine-tuning photo", f"{d['start']:.3f}", f"{d['finetuned']:.3f}")]
    if "share" in transfer:
        rows.append(("samples whose nearest photo is a fine-tuning photo",
                     f"{transfer['share']['start']:.0%}", f"{transfer['share']['finetuned']:.0%}"))
    out = ["<h2>Did fine-tuning move the network toward the photos?</h2>",
           f"<p>Cosine distances between pooled ImageNet features ({html.escape(transfer['backbone'])}, "
           f"{html.escape(transfer['features'])}) of samples and photos, both at the GAN resolution. "
           f"{transfer['num_finetune_photos']} fine-tuning photos"
           + (f", {transfer['num_start_photos']} other photos the starting network was trained on"
              if transfer["num_start_photos"]
              else "") + ".</p>",
           _table(rows, ("", "starting network", "fine-tuned")),
           "<h3>Each fine-tuned sample beside its nearest training photo</h3>"
           "<p>Generated images, not copies: compare each sample (left) with the closest photo the "
           "network was trained on (right), in the same features.</p><div class='row'>"]
    for item in transfer["nearest"]:
        sample, photo = _load(resolve(item["sample"])), centre_square(_load(resolve(item["photo"])))
        out.append('<div class="row" style="margin-right:14px">'
                   + _img(sample, os.path.basename(item["sample"]), pixelated=True, width=128)
                   + _img(photo, f"{os.path.basename(item['photo'])} ({item['distance']:.3f})", pixelated=True,
                          width=128) + "</div>")
    out.append("</div>")
    return "\n".join(out)


def _curves_section(curves: Dict[str, Dict[str, Series]]) -> str:
    out = ["<h2>Training curves</h2>"]
    for run, scalars in curves.items():
        out.append(f"<h3>{html.escape(run)}</h3>")
        if not scalars:
            out.append("<p>No scalars logged.</p>")
            continue
        varying = {tag: p for tag, p in scalars.items() if len({y for _, y in p}) > 1}
        out.append('<div class="charts">' + "".join(
            svg_chart(tag, points) for tag, points in sorted(varying.items())) + "</div>")
        constant = sorted(f"{tag} = {points[0][1]:.4g}" for tag, points in scalars.items()
                          if tag not in varying)
        if constant:
            out.append(f"<p>Constant: {html.escape(', '.join(constant))}.</p>")
    return "\n".join(out)


def _run_line(summary: dict) -> str:
    """One paragraph: photos, starting network, training length, SR model."""
    cfg, gan = summary["settings"], summary["gan"]
    start = ("a new network from scratch" if cfg.get("resume_pkl") == "none"
             else os.path.basename(str(cfg.get("resume_pkl"))))
    sr = summary.get("sr_model") or "?"
    return (f"<p>Preset <b>{html.escape(str(cfg.get('preset')))}</b>: photos from "
            f"<code>{html.escape(str(cfg.get('data_dir')))}</code>; StyleGAN trained from "
            f"{html.escape(start)} to {gan.get('kimg', '?')} kimg "
            f"(snapshot <code>{html.escape(str(gan.get('snapshot', '?')))}</code>); "
            f"super-resolution x{cfg.get('sr_scale')} with <code>{html.escape(sr)}</code>.</p>")


def render_html(summary: dict, pairs: List[Tuple[str, str]], curves: Dict[str, Dict[str, Series]],
                starts: List[str] = (), resolve=os.path.abspath) -> str:
    """The report page for ``summary`` (see ``build_summary``), sample/enhanced ``pairs``, ``curves``,
    the starting network's samples of the same seeds (``starts``); ``resolve`` turns a path of a
    record into a file path."""
    warnings = summary["warnings"]
    warn = ("<div class='warn'><b>Warnings</b><ul>" + "".join(
        f"<li>[{html.escape(w['stage'])}] {html.escape(w['message'])}</li>" for w in warnings)
        + "</ul></div>") if warnings else "<p>No warnings.</p>"
    figure = _figure(pairs, starts) if pairs else "<p>No samples.</p>"
    timings = [(name, s["status"], format_seconds(s["elapsed_sec"]), "yes" if s["resumed"] else "")
               for name, s in summary["stages"].items()]
    settings = [(k, json.dumps(v)) for k, v in sorted(summary["settings"].items())]
    return "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Pipeline report: {html.escape(summary['settings'].get('preset', ''))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>StyleGAN transfer learning + super-resolution: report</h1>",
        _run_line(summary), warn, figure, _transfer_section(summary.get("transfer"), resolve),
        _gan_metrics_section(summary["gan"].get("metrics")),
        _metrics_section(summary["sr_metrics"]), _curves_section(curves),
        "<h2>Stages</h2>", _table(timings, ("stage", "status", "time", "resumed")),
        "<h2>Settings</h2>", _table(settings, ("setting", "value")),
        "</body></html>"])


def build_summary(settings: dict, records: Dict[str, dict]) -> dict:
    """The numbers of a run (``summary.json``) from its settings and stage records.

    Keys: ``settings``, ``stages`` ({name: status, elapsed_sec, resumed}), ``gan`` (the
    fine-tuning result), ``transfer`` (pipeline.transfer's result), ``sr_metrics``, ``sr_model``, ``samples``, ``pairs`` ([sample, enhanced]
    paths relative to the work dir), ``warnings`` ([{stage, message}]).
    """
    def get(stage, *keys):
        value = records.get(stage) or {}
        for key in keys:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return value

    return {
        "settings": settings,
        "stages": {name: {"status": r.get("status"), "elapsed_sec": r.get("elapsed_sec", 0.0),
                          "resumed": bool(r.get("resumed"))}
                   for name, r in records.items() if r},
        "gan": {**get("finetune", "result"), "snapshot": get("finetune", "outputs", "snapshot")},
        "transfer": get("transfer", "result"),
        "sr_metrics": get("sr_train", "result", "metrics"),
        "sr_model": get("sr_train", "outputs", "model"),
        "samples": get("generate", "result", "images") or [],
        "pairs": get("enhance", "result", "pairs") or [],
        "warnings": [{"stage": name, "message": message} for name, r in records.items() if r
                     for message in r.get("warnings", [])],
    }
