"""`pldc predict`: a trained model's instances on new images, written as a COCO results JSON.

The images go through the same path as evaluation (``model.inference.predict_each`` with the run's
test-time resize, then ``evaluation.image_results``), so what is written here is exactly what
``pldc eval`` scores (``pldc eval --predictions-out`` writes the same dicts for the val images). Each
result is a COCO result dict (``image_id``, ``category_id`` from the run's categories,
``segmentation`` as compressed RLE, ``score``, ``bbox``, ``area``) plus the image's ``file_name``:
new images have no COCO ids, so they are numbered 1..N in the order they were given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="RUN_OR_CKPT",
                        help="a run folder (its last checkpoint) or a checkpoint file")
    parser.add_argument("--images", required=True, nargs="+", metavar="DIR_OR_FILE",
                        help="image files and/or folders (every image under them); image ids are 1..N in this order")
    parser.add_argument("--out", required=True, help="the COCO results JSON to write")
    parser.add_argument("--model", choices=("teacher", "student"), default="teacher",
                        help="which weights (default: teacher; the student during burn-in, when there is no teacher)")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="keep instances scoring at least this, in [0, 1] (default: 0, the top-k of the "
                             "run's model.test_top_k per image, as evaluation keeps)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")


def predict(model, images, image_size: int, device, categories, *, top_k: int,
            score_threshold: float = 0.0, test_size="train") -> list[dict]:
    """COCO result dicts (with ``file_name``) of ``model`` on every image of ``images`` (an ``ImageList``),
    resized as ``test_size`` says (``data.augment.TestResize``)."""
    from pldc_core.evaluation import image_results
    from pldc_core.model.inference import predict_each

    results = []
    for image_id, hw, pred in predict_each(model, images, images.image_ids, image_size, device, desc="predict",
                                           test_size=test_size):
        file_name = images.image_info(image_id)["file_name"]
        for result in image_results(image_id, pred.class_logits, pred.at_size(hw), categories, top_k):
            if result["score"] >= score_threshold:
                results.append({**result, "file_name": file_name})
    return results


def test_size_of(cfg) -> object:
    """The test-time resize ``pldc eval`` uses for this run (``data.test_size``, "auto" resolved by the
    run's dataset, e.g. short side 800 for COCO). A dataset this machine does not know (a registered one
    whose registry file is elsewhere) resolves "auto" as ``train``, with a warning."""
    from pldc_core.data.coco import DatasetError
    from pldc_core.data.registry import eval_protocol, get_dataset

    if cfg.data.test_size != "auto":
        return tuple(cfg.data.test_size) if isinstance(cfg.data.test_size, list) else cfg.data.test_size
    try:
        spec = get_dataset(cfg.data.dataset, data_root=cfg.data.data_root, registry_file=cfg.data.registry_file)
    except DatasetError as exc:
        print(f"pldc predict: warning: data.test_size=auto resolved as 'train' (the run's dataset: {exc})",
              file=sys.stderr)
        return "train"
    return eval_protocol(cfg.data, spec)[1]


def run(args: argparse.Namespace) -> int:
    from pldc_core.atomic import write_json
    from pldc_core.messages import error_line
    from pldc_core.data.coco import DatasetError, ImageList
    from pldc_core.distributed import pick_device
    from pldc_core.eval_command import load_trained_model, weights_used
    from pldc_core.training.checkpoint import load_checkpoint

    if not 0.0 <= args.score_threshold <= 1.0:
        print(f"pldc predict: --score-threshold must be in [0, 1], got {args.score_threshold}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.is_dir():
        print(f"pldc predict: {out}: is a folder; give the JSON file to write (e.g. {out / 'results.json'})",
              file=sys.stderr)
        return 2
    try:
        state = load_checkpoint(args.checkpoint, map_location="cpu")
        images = ImageList.from_paths(args.images)
        device = pick_device(args.device)
        model, cfg, categories = load_trained_model(state, args.model, device, source=str(args.checkpoint))
        results = predict(model, images, cfg.data.image_size, device, categories, top_k=cfg.model.test_top_k,
                          score_threshold=args.score_threshold, test_size=test_size_of(cfg))
        write_json(out, results, indent=None)
    except (OSError, DatasetError, ValueError, KeyError) as exc:
        print(f"pldc predict: {error_line(exc)}", file=sys.stderr)
        return 1
    with_any = len({r["image_id"] for r in results})
    print(f"wrote {out}: {len(results)} instances on {with_any} of {len(images)} images "
          f"({weights_used(state, args.model)} of iteration {state['iteration']}, score >= {args.score_threshold:g}; "
          f"each result names its file_name)")
    return 0
