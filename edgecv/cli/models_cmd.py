"""``edgecv models``: the model store on this device (install, list, activate, rollback, remove, history)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import shape
from edgecv.tables import render

EXAMPLES = """\
examples:
  edgecv models install out/det.int8.onnx --name det --reason "retrained on site 4"
  edgecv models install ssd_mobilenet_v1.tflite --name people --spec ssd-mobilenet-v1-coco --activate
  edgecv models list                             every model, its versions, which is active
  edgecv models list det --json
  edgecv models activate det 3 --reason "canary passed"
  edgecv models rollback det --reason "misses people at night"
  edgecv models remove det 1
  edgecv models history det
  edgecv track --model store:det --source rtsp://cam/stream       the active version of det
  edgecv track --model store:det@2 --source street.mp4            version 2, whatever is active

The store is a folder (--store, else $EDGECV_STORE, else ~/.local/share/edgecv/models). Every change is
atomic and recorded in its history.jsonl with time and reason; concurrent commands wait for each other.
'install' checks the files against the manifest's hashes, copies them, and loads and benchmarks the copy
(p50 here) before anything is recorded: a file that fails is refused and nothing is installed.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models", help=COMMANDS["models"].summary, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Numbered versions of named models on this device, one of them active: what "
        "'edgecv track --model store:NAME' and 'edgecv serve' (model: store:NAME) run.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        a.add_argument("--store", type=Path, help="the store folder (default: $EDGECV_STORE, else "
                       "~/.local/share/edgecv/models)")
        a.add_argument("--json", action="store_true", help="print the result as JSON")
        a.set_defaults(run=run)
        return a

    a = action("install", "copy an artifact into the store as the next version of NAME")
    a.add_argument("artifact", type=Path, help="the artifact (.tflite, .onnx, .xml); its companions and manifest come along")
    a.add_argument("--name", required=True, help="the model's name in the store")
    a.add_argument("--reason", default="", help="why (kept in the history)")
    a.add_argument("--spec", help="detector spec to keep with it: a built-in name or a YAML file (default: the manifest's)")
    a.add_argument("--labels", type=Path, help="class names to keep with it, one per line")
    a.add_argument("--activate", action="store_true", help="make it the active version (default: only when NAME has none)")
    a.add_argument("--input-shape", type=shape, metavar="SHAPE", help="the shape to check a model with dynamic dims "
                   "at, e.g. 1x3x320x320 (default: the shape its manifest was checked at)")
    a = action("list", "the models, their versions and which is active")
    a.add_argument("name", nargs="?", help="only this model")
    a = action("activate", "make a version the active one")
    a.add_argument("name")
    a.add_argument("version", type=int)
    a.add_argument("--reason", default="")
    a = action("rollback", "make the version active before the current one active again")
    a.add_argument("name")
    a.add_argument("--reason", default="")
    a = action("remove", "delete a version (not the active one), or with --all the whole model")
    a.add_argument("name")
    a.add_argument("version", type=int, nargs="?")
    a.add_argument("--all", action="store_true", help="every version: the model is gone")
    a.add_argument("--reason", default="")
    a = action("history", "every change, with time and reason")
    a.add_argument("name", nargs="?", help="only this model")
    a = action("check", "every installed file against the hash recorded at install")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.store import ModelStore

    store = ModelStore(args.store)
    return {"install": _install, "list": _list, "activate": _activate, "rollback": _rollback, "remove": _remove,
            "history": _history, "check": _check}[args.action](store, args)


def _install(store, args) -> int:
    from edgecv.store import PREFIX

    v = store.install(args.artifact, name=args.name, reason=args.reason, spec=args.spec, labels=args.labels,
                      activate=True if args.activate else None, input_shape=args.input_shape)
    if args.json:
        print(json.dumps(v.summary(), indent=2))
        return 0
    s = v.summary()
    p50 = f", p50 here {s['p50_ms']:.2f} ms ({s['backend']})" if s.get("p50_ms") is not None else ""
    state = "active" if v.active else f"not active (edgecv models activate {v.name} {v.number})"
    print(f"installed {v.name} version {v.number}: {s['artifact']}{p50}; {state}; run it as {PREFIX}{v.name}")
    return 0


def _validation_text(validation: dict[str, Any] | None) -> str:
    if not validation:
        return "-"
    parts = [validation.get("status") or ""]
    if validation.get("drop_points") is not None:
        parts.append(f"drop {validation['drop_points']:.2f} pts")
    return " ".join(p for p in parts if p) or "-"


def _list(store, args) -> int:
    names = [args.name] if args.name else store.names()
    rows = [v.summary() for name in names for v in store.versions(name)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models in the store {store.root} (edgecv models install ARTIFACT --name NAME)")
        return 0
    table = [[r["name"], str(r["version"]), "*" if r["active"] else "", r["artifact"], r["precision"] or "-",
              f"{r['p50_ms']:.2f}" if r.get("p50_ms") is not None else "-", _validation_text(r["validation"]),
              (r["installed"] or "")[:16].replace("T", " "), r["reason"]] for r in rows]
    print(render(["model", "version", "active", "artifact", "precision", "p50 ms here", "validation", "installed",
                  "reason"], table))
    print(f"\nstore: {store.root}")
    return 0


def _activate(store, args) -> int:
    v = store.activate(args.name, args.version, reason=args.reason)
    return _said(args, v, f"{v.name}: version {v.number} is active")


def _rollback(store, args) -> int:
    v = store.rollback(args.name, reason=args.reason)
    return _said(args, v, f"{v.name}: rolled back to version {v.number}")


def _remove(store, args) -> int:
    from edgecv.errors import ConfigError

    if (args.version is None) == (not args.all):
        raise ConfigError("models remove: give a VERSION or --all (every version), not both or neither")
    gone = store.remove(args.name, args.version, reason=args.reason)
    if args.json:
        print(json.dumps({"name": args.name, "removed": gone}))
    else:
        print(f"{args.name}: version{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))} removed")
    return 0


def _said(args, v, text: str) -> int:
    print(json.dumps(v.summary(), indent=2) if args.json else text)
    return 0


def _history(store, args) -> int:
    events = store.history(args.name)
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    rows = [[str(e.get("seq", "")), (e.get("time") or "")[:19].replace("T", " "), e["action"], e["name"], str(e["version"]),
             "" if e.get("previous") is None else str(e["previous"]), e.get("reason", "")] for e in events]
    print(render(["#", "time (UTC)", "change", "model", "version", "from", "reason"], rows) if rows else "no changes yet")
    return 0


def _check(store, args) -> int:
    problems = store.check()
    if args.json:
        print(json.dumps({"store": str(store.root), "problems": problems}, indent=2))
    else:
        print("\n".join(problems) if problems else f"every installed file matches its recorded hash ({store.root})")
    return 1 if problems else 0
