"""``facetrack assets list|fetch|verify|build|path``: the third-party asset registry."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tools.options import add_json_option, write_json
from tracker.core import assets
from tracker.core.errors import AssetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("assets", help="list, fetch, verify and build third-party assets")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser("list", help="each asset's state, licence and location")
    add_json_option(v)
    v.set_defaults(func=cmd_list)

    v = verbs.add_parser("verify", help="re-hash every asset; exit 1 if any is missing or corrupt")
    add_json_option(v)
    v.set_defaults(func=cmd_verify)

    v = verbs.add_parser("fetch", help="download assets from upstream into the user cache")
    v.add_argument("names", nargs="*", help="asset names (default: all)")
    v.add_argument("--force", action="store_true", help="download again even if a valid copy exists")
    v.set_defaults(func=cmd_fetch)

    v = verbs.add_parser("build", help="convert the ICT model into the compact runtime cache")
    v.add_argument("--source", help="FaceXModel folder or archive (default: the registered asset)")
    v.add_argument("--out", help="cache file (default: the user cache)")
    add_json_option(v)
    v.set_defaults(func=cmd_build)

    v = verbs.add_parser("use", help="record asset folders for this environment (found in every shell)")
    v.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="folder(s) holding the assets")
    v.set_defaults(func=cmd_use)

    v = verbs.add_parser("path", help="print the path of one asset")
    v.add_argument("name")
    v.set_defaults(func=cmd_path)


def _statuses(verify: bool) -> list[assets.AssetStatus]:
    return [assets.check(a, verify=verify) for a in assets.REGISTRY]


def _report(statuses: list[assets.AssetStatus]) -> list[dict]:
    rows = []
    for st in statuses:
        a = st.asset
        print(f"{st.state.upper():10s} {a.name:26s} {a.licence:11s} {st.path or a.relpath}")
        if st.state == "mismatch":
            print(f"           expected sha256 {a.sha256}\n           actual   sha256 {st.actual_sha256}")
            print(f"           fix: facetrack assets fetch {a.name} --force")
        elif st.state == "missing":
            print(f"           fix: facetrack assets fetch {a.name}  (or `facetrack assets use DIR`, or set FACETRACK_ASSETS)")
        rows.append({"name": a.name, "state": st.state, "path": st.path, "licence": a.licence, "url": a.url,
                     "sha256": a.sha256, "actual_sha256": st.actual_sha256})  # fmt: skip
    return rows


def cmd_list(args) -> int:
    statuses = _statuses(verify=False)
    write_json(args.json, {"assets": _report(statuses), "search_path": [str(r) for r in assets.search_roots()]})
    missing = [s.asset.name for s in statuses if s.asset.required and s.state in ("missing", "mismatch")]
    if missing:
        print(f"required asset(s) missing or corrupt: {', '.join(missing)} (searched: "
              f"{', '.join(str(r) for r in assets.search_roots())})")  # fmt: skip
        return 1
    return 0


def cmd_use(args) -> int:
    path = assets.record_roots(args.folders)
    print(f"wrote {path}: assets are looked up in {', '.join(str(f) for f in args.folders)} (then the user cache)")
    return 0


def cmd_verify(args) -> int:
    statuses = _statuses(verify=True)
    write_json(args.json, {"assets": _report(statuses)})
    bad = [s.asset.name for s in statuses if s.state != "ok"]
    if bad:
        print(f"{len(bad)} asset(s) not OK: {', '.join(bad)}")
        return 1
    print(f"all {len(statuses)} assets OK")
    return 0


def cmd_fetch(args) -> int:
    names = args.names or [a.name for a in assets.REGISTRY]
    for name in names:
        path = assets.fetch(assets.get_asset(name), force=args.force)
        print(f"OK {name}: {path}")
    return 0


def cmd_build(args) -> int:
    from tracker.core.face_model import FaceModel
    from tracker.core.face_model.build import build_cache

    t0 = time.perf_counter()
    out = build_cache(source=args.source, out=args.out)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    FaceModel.load(out, build_if_missing=False)
    load_s = time.perf_counter() - t0
    size_mb = out.stat().st_size / 1e6
    print(f"built {out}: {size_mb:.1f} MB in {build_s:.1f} s; loads in {load_s * 1e3:.0f} ms")
    write_json(args.json, {"path": out, "build_s": build_s, "load_s": load_s, "size_mb": size_mb})
    return 0


def cmd_path(args) -> int:
    try:
        print(assets.require(args.name, verify=False))
    except AssetError:
        raise
    return 0
