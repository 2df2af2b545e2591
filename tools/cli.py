"""The ``facetrack`` command line: one thin module per subcommand under ``tools/``.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
function ``(args) -> int`` (the exit code). This is the only place logging is configured.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tracker.core.errors import TrackerError

log = logging.getLogger("facetrack")

#: Subcommand modules, in the order ``facetrack --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("tools.assets_cmd", "tools.demo_cmd", "tools.run_cmd", "tools.engines_cmd", "tools.eval_cmd", "tools.record_cmd", "tools.record_realsense_cmd", "tools.replay_cmd", "tools.bridge_cmd", "tools.stream_cmd", "tools.view_cmd", "tools.train_cmd", "tools.fit_cmd", "tools.render_cmd", "tools.calibrate_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetrack",
        description="Real-time 3D face performance capture: capture -> detect -> regress -> render/stream.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except TrackerError as exc:
        # Errors we raise on purpose carry a message that says what was wrong and what to do.
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
