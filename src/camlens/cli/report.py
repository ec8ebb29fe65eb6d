"""``camlens report RUN``: the HTML report of a run folder, optionally served on localhost."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report of a run folder (run/report/index.html)")
    p.add_argument("run", help="a run folder (the --out of `camlens explain`)")
    p.add_argument("--out", help="report folder (default: RUN/report)")
    p.add_argument("--thumb-size", type=int, default=240, help="longest side of the photo thumbnails in pixels (default 240)")
    p.add_argument("--workers", type=int, help="threads writing thumbnails (default: the CPU count, at most 8)")
    p.add_argument("--serve", action="store_true", help="then serve it on http://127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=0, help="port for --serve (default: any free port)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import InputError
    from ..viz.report import write_report

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    stats = write_report(args.run, args.out, thumb_size=args.thumb_size, workers=args.workers,
                         progress=False if args.quiet else None)
    print(stats)
    if not args.serve:
        print(f"open {stats.index.resolve().as_uri()}")
        return 0
    return serve(Path(args.run), stats.index, args.port)


def serve(run_folder: Path, index: Path, port: int) -> int:
    """Serve the run folder (so the report's links to overlays work) until Ctrl-C."""
    from ..viz.report.serve import make_server, report_url

    index = index.resolve()
    root = run_folder.resolve()
    if root not in index.parents:
        root = index.parent
    server = make_server(root, port)
    print(f"serving {report_url(server, root, index)}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0
