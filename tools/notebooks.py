"""The chapters keep their outputs so that a reader on GitHub sees the numbers and plots the prose talks about.

    python tools/notebooks.py run [--slow] [NB ...]   execute notebooks top to bottom (all of nbs/ by default, in
                                                      chapter order) and write their outputs back into them
    python tools/notebooks.py stats [NB ...]          how the chapters read: cells with outputs, exported cells
                                                      followed by an example or test, the longest exported cells

`run` executes exactly as the test suite does (nbdev's runner: cells flagged `slow` are skipped unless --slow), in
the notebook's folder, and stops at the first failing notebook with its traceback, leaving that notebook unchanged.
Outputs are tidied for reading: progress bars keep only their final state, long logs keep their head and tail.
Then `nbdev_clean` normalises the metadata, as for any commit.
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
MAX_LINES = 40          # a stream output longer than this keeps its first and last MAX_LINES // 2 lines

def notebooks(names) -> list[Path]:
    if not names: return sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
    out = []
    for n in names:
        p = Path(n)
        if not p.exists(): p = NBS / (n if n.endswith(".ipynb") else n + ".ipynb")
        if not p.exists(): sys.exit(f"error: no notebook {n}")
        out.append(p.resolve())
    return out

def skip_flags(slow: bool) -> set[str]:
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(ROOT / "settings.ini")
    return {f for f in cfg["DEFAULT"].get("tst_flags", "").split() if not (f == "slow" and slow)}

def tidy_text(text: str) -> str:
    """A progress bar's final state (the text after each line's last carriage return); head and tail of long logs;
    paths inside this checkout shown relative to it."""
    text = text.replace(str(ROOT) + "/", "")
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    lines = [ln for i, ln in enumerate(lines) if ln or i == len(lines) - 1]
    if len(lines) > MAX_LINES:
        h = MAX_LINES // 2
        lines = lines[:h] + [f"... ({len(lines) - 2 * h} lines left out) ..."] + lines[-h:]
    return "\n".join(lines)

def tidy(outputs: list) -> list:
    out = []
    for o in outputs:
        if o.get("output_type") == "stream":
            o["text"] = tidy_text("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            if not o["text"].strip(): continue
        for k, v in (o.get("data") or {}).items():
            if k.startswith("text/"):
                o["data"][k] = (v if isinstance(v, str) else "".join(v)).replace(str(ROOT) + "/", "")
        out.append(o)
    return out

def run_one(path: Path, flags: set[str]) -> float:
    "Execute `path` as nbdev's test runner does and write the outputs back; return the seconds it took."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    from fastcore.xtras import working_directory
    os.environ["IN_TEST"] = "1"
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb

    def no_eval(cell):
        if cell.cell_type != "code": return True
        if "nbdev_export" + "(" in cell.source: return True
        direc = getattr(cell, "directives_", {}) or {}
        if direc.get("eval:", [""])[0].lower() == "false": return True
        return bool(flags & direc.keys())

    t = time.time()
    shell = CaptureShell(path, mpl_format="png")
    with working_directory(path.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=no_eval)
        except Exception:
            sys.stderr.write(shell.prettytb(fname=path) + "\n")
            raise SystemExit(f"error: {path.name} failed; its outputs were not written")
    ran = {c.get("id"): c for c in nb.cells if c.cell_type == "code"}
    raw = read_nb(path)
    for c in raw.cells:
        if c.cell_type != "code": continue
        new = ran.get(c.get("id"))
        c["outputs"] = tidy([dict(o) for o in (new.get("outputs") or [])]) if new is not None else []
        c["execution_count"] = None
    write_nb(raw, path)
    return time.time() - t

def cmd_run(args) -> int:
    flags = skip_flags(args.slow)
    paths = notebooks(args.notebooks)
    for p in paths:                      # each in a fresh process, as nbdev's runner does: no state leaks between
        print(f"[notebooks] running {p.name} ...", flush=True)   # chapters (threads, environment, imports)
        t = time.time()
        cmd = [sys.executable, __file__, "_one", str(p)] + ["--slow"] * args.slow
        if subprocess.run(cmd, cwd=ROOT).returncode: return 1
        print(f"[notebooks] {p.name}: outputs written ({time.time() - t:.0f} s)", flush=True)
    exe = Path(sys.executable).parent / "nbdev_clean"
    for p in paths: subprocess.run([str(exe), "--fname", str(p)], cwd=ROOT, check=True)
    return 0

EXPORT = re.compile(r"^#\|\s*export", re.M)

def stats(paths: list[Path]) -> dict:
    from execnb.nbio import read_nb
    code = with_out = exported = followed = 0
    longest = []
    for p in paths:
        cells = [c for c in read_nb(p).cells if c.cell_type == "code"]
        code += len(cells); with_out += sum(bool(c.get("outputs")) for c in cells)
        for i, c in enumerate(cells):
            if not EXPORT.search(c.source): continue
            exported += 1
            longest.append((len(c.source.splitlines()), f"{p.name}#{c.get('id')}"))
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            if nxt is not None and not EXPORT.search(nxt.source): followed += 1
    longest.sort(reverse=True)
    return {"code_cells": code, "with_outputs": with_out, "exported": exported, "followed": followed,
            "over_40": sum(n > 40 for n, _ in longest), "longest": longest[:5]}

def cmd_stats(args) -> int:
    s = stats(notebooks(args.notebooks))
    print(f"code cells with outputs: {s['with_outputs']} of {s['code_cells']}")
    print(f"exported cells followed by an example or test: {s['followed']} of {s['exported']}")
    print(f"exported cells over 40 lines: {s['over_40']}; longest: " + ", ".join(f"{n} ({w})" for n, w in s["longest"]))
    return 0

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/notebooks.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks and keep their outputs")
    r.add_argument("--slow", action="store_true", help="also run cells flagged slow")
    r.add_argument("notebooks", nargs="*")
    s = sub.add_parser("stats", help="cells with outputs, exported cells followed by a test, longest exported cells")
    s.add_argument("notebooks", nargs="*")
    one = sub.add_parser("_one")           # internal: one notebook, in this process
    one.add_argument("--slow", action="store_true")
    one.add_argument("notebook")
    args = ap.parse_args(argv)
    if args.cmd == "_one": run_one(Path(args.notebook), skip_flags(args.slow)); return 0
    return cmd_run(args) if args.cmd == "run" else cmd_stats(args)

if __name__ == "__main__":
    sys.exit(main())
