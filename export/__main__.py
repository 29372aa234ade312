"""`python -m export`: the models in models.toml -> verified ONNX variants -> a Triton model repository."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from core import cli
from export.progress import stdout_log

ROOT = Path(__file__).resolve().parents[1]

EPILOG = """\
steps, per model: train or load the source -> convert (tf2onnx, opset 17) -> optimize (int8, fp16)
-> parity gate on held-out data -> config.pbtxt, labels, model card -> swap the staged repository in.

A model is rebuilt only when its spec entry, its source or data files, the export or trainer code, or the
installed versions of tensorflow, keras, tf2onnx, onnx, onnxruntime, onnxconverter-common, onnxslim changed.
When the default INT8 recipe fails the gate, other recipes are tried (see the card); an optional variant
no recipe passes is left out with a warning. A failing gate leaves the previous repository untouched.

examples:
  python -m export                      export everything that changed
  python -m export --only digits        one model (a base name or a variant name such as digits_int8)
  python -m export --force              rebuild even what is up to date
  python -m export --clean              remove generated .onnx/.plan/tokenizer files, keep committed ones

exit status: 0 done, 1 export failed (gate, conversion, missing source), 2 wrong spec or flags,
70 a bug in modelport (MODELPORT_TRACEBACK=1 shows its traceback).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser("export", __doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=ROOT / "models.toml", metavar="PATH",
                   help="the model spec (default: models.toml at the project root)")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository", metavar="PATH",
                   help="the Triton model repository to write (default: model_repository/)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="export only this model; repeat for several")
    p.add_argument("--force", action="store_true", help="rebuild models even when their fingerprint is unchanged")
    p.add_argument("--clean", action="store_true", help="remove generated artifacts from the repository and exit")
    p.add_argument("--int8-search-seconds", type=float, default=None, metavar="SECONDS",
                   help="time budget per model for trying INT8 recipes when the default one fails the gate "
                        "(default: 120)")
    return p.parse_args(argv)


@cli.program("export")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # TensorFlow's C++ start-up lines would drown the progress lines; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Heavy imports after argument parsing, so --help answers at once.
    from export import pipeline
    from core.spec import load_spec

    spec = load_spec(args.spec)
    if args.clean:
        pipeline.clean(spec, args.repository, stdout_log)
        return 0
    options = pipeline.Options(args.repository, tuple(args.only), args.force)
    if args.int8_search_seconds is not None:
        options = replace(options, int8_search_seconds=args.int8_search_seconds)
    pipeline.run(spec, options, stdout_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
