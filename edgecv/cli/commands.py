"""The CLI's commands in one table: name, the module that builds and runs it, its one-line summary, and
which side of edgecv it belongs to. ``edgecv --help`` is built from this table alone, so starting the CLI
imports no command module; only the command being run is imported.

A workstation command needs the conversion tools (``pip install 'edgecv[convert]'``); on a device install
it stops with one line naming that extra before anything else runs.

Example:
    >>> COMMANDS["export"].side, COMMANDS["track"].side
    ('workstation', 'device')
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICE = "device"
WORKSTATION = "workstation"
# What a workstation command needs that a device install does not have (the "convert" extra's core).
WORKSTATION_MODULES = ("tensorflow", "onnx", "tf2onnx")


@dataclass(frozen=True)
class Command:
    """One ``edgecv`` subcommand: ``module`` has ``add_parser(subparsers)`` and sets ``run(args) -> int``."""

    name: str
    module: str
    summary: str
    side: str


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
    Command("demo", "edgecv.cli.demo_cmd", "the main job on the built-in detector: export, validate, benchmark, track", WORKSTATION),
    Command("export", "edgecv.cli.export_cmd", "convert a model to edge artifacts, float or quantized, each checked against the source", WORKSTATION),
    Command("bench", "edgecv.cli.bench_cmd", "benchmark artifacts side by side", DEVICE),
    Command("info", "edgecv.cli.info_cmd", "show an artifact's inputs, outputs and manifest", DEVICE),
    Command("qat", "edgecv.cli.qat_cmd", "quantization-aware training, exported to int8 TFLite, ONNX and OpenVINO", WORKSTATION),
    Command("prune", "edgecv.cli.prune_cmd", "prune (channels, magnitude, 2:4), fine-tune, export and compare", WORKSTATION),
    Command("distill", "edgecv.cli.distill_cmd", "distill a teacher into a smaller student, export and compare", WORKSTATION),
    Command("cluster", "edgecv.cli.cluster_cmd", "cluster weights to a few shared values, fine-tune, export and compare", WORKSTATION),
    Command("eval-det", "edgecv.cli.eval_det_cmd", "COCO mAP of detections against ground truth", DEVICE),
    Command("detect", "edgecv.cli.detect_cmd", "run a detector on images or a video", DEVICE),
    Command("specs", "edgecv.cli.specs_cmd", "list the built-in detector specs; show or check one", DEVICE),
    Command("track-eval", "edgecv.cli.track_eval_cmd", "HOTA, MOTA and IDF1 of a tracker on MOTChallenge files", DEVICE),
    Command("track", "edgecv.cli.track_cmd", "detect and track objects on a camera, stream, video or image folder", DEVICE),
    Command("serve", "edgecv.cli.serve_cmd", "run many cameras as a service: shared batched models, HTTP API, live view, metrics", DEVICE),
    Command("models", "edgecv.cli.models_cmd", "the model store on this device: install, activate, roll back versions", DEVICE),
    Command("devices", "edgecv.cli.devices_cmd", "list device profiles; check an artifact against one", DEVICE),
    Command("optimize", "edgecv.cli.optimize_cmd", "build every candidate a device allows, check, benchmark and choose", WORKSTATION),
    Command("sweep", "edgecv.cli.sweep_cmd", "models x devices x recipes as jobs on this machine or a Ray cluster, resumable", WORKSTATION),
    )
}
