"""Command line: `python -m paper build|status|publish`.

  build    execute the out-of-date notebooks of a profile, publish them for the site, render with Quarto
  status   say which notebooks of a profile are up to date, and why the others are not
  publish  copy a profile's executed notebooks to notebooks/_executed/site/ (Quarto's pre-render hook)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .notebooks import NotebookError
from .params import ParamsError
from .publish import publish, status
from .quarto import SITE_PROFILE, render
from .runner import BuildError, Project, build, find_root


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m paper", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute notebooks (cached), publish, render the site")
    b.add_argument("--profile", default=SITE_PROFILE,
                   help=f"parameters file notebooks/params/<profile>.yaml (default: {SITE_PROFILE}, the full-size "
                        "study; `default` is the quick CPU check)")
    b.add_argument("--force", action="store_true",
                   help="re-execute even when up to date (only the --only notebooks if given)")
    b.add_argument("--only", nargs="+", metavar="NOTEBOOK_STEM", help="build these notebooks and their dependencies")
    b.add_argument("--no-render", action="store_true", help="skip the Quarto step")
    b.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    b.add_argument("--threads", type=int, default=None,
                   help="CPU threads per kernel (OMP_NUM_THREADS); 1 is fastest for the default profile on a busy CPU")
    for name, text in (("status", "report which notebooks are up to date"),
                       ("publish", "copy executed notebooks to notebooks/_executed/site/")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--profile", default=None,
                       help="profile (default: the first profile in $QUARTO_PROFILE that has a parameters file, "
                            f"else {SITE_PROFILE!r})")
    ap.add_argument("--root", default=None, help="project root (default: found from the current directory)")
    return ap


def active_profile(project: Project, requested: str | None) -> str:
    """`requested`, else the first of $QUARTO_PROFILE with a parameters file, else the site's profile."""
    if requested:
        return requested
    for name in filter(None, os.environ.get("QUARTO_PROFILE", "").split(",")):
        if (project.params_dir / f"{name.strip()}.yaml").is_file():
            return name.strip()
    return SITE_PROFILE


def _report(project: Project, profile: str) -> list[str]:
    p, missing = status(project, profile)
    for step in p.steps:
        state = "up to date" if step.up_to_date else f"STALE ({step.reason})"
        if step.stem in missing:
            state = "MISSING"
        print(f"  {step.stem}: {state}")
    stale = [s.stem for s in p.steps if not s.up_to_date and s.stem not in missing]
    if stale:
        print(f"  stale outputs are used as they are; refresh them with "
              f"`python -m paper build --profile {profile} --only {' '.join(stale)}`")
    return missing


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    project = Project.at(args.root or find_root())
    try:
        if args.command == "build":
            t0 = time.monotonic()
            p = build(project, args.profile, force=args.force, only=args.only, progress_bar=not args.no_progress,
                      threads=args.threads)
            ran = sum(s.status == "executed" for s in p.steps)
            print(f"{ran} of {len(p.steps)} notebooks executed, {len(p.steps) - ran} up to date "
                  f"({time.monotonic() - t0:.0f} s); outputs in {project.rel(project.store(args.profile))}/")
            print(f"published to {project.rel(publish(project, args.profile))}/")
            return 0 if args.no_render else render(project.root, args.profile)
        profile = active_profile(project, args.profile)
        print(f"profile {profile}:")
        missing = _report(project, profile)
        if args.command == "publish":
            if missing:
                print(f"error: no executed output for {', '.join(missing)}; "
                      f"run `python -m paper build --profile {profile}`", file=sys.stderr)
                return 1
            print(f"published to {project.rel(publish(project, profile))}/")
        return 0
    except (BuildError, NotebookError, ParamsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
