"""The end of a test run, from pytest's junit xml: the slowest items (notebooks and tests, seconds each) and the
total, also written to `durations.txt` beside the xml, then the countable closing line
(`tests: N passed, N failed, N skipped`).

    python tools/summary.py .test-results/junit.xml [WALL_SECONDS]
"""
import sys, xml.etree.ElementTree as ET
from pathlib import Path

SLOWEST = 20

def durations(root) -> list[tuple[float, str]]:
    "(seconds, item) of every test case, slowest first."
    items = [(float(c.get("time", 0)), f"{c.get('classname', '').replace('.', '/')}.py::{c.get('name')}")
             for c in root.iter("testcase")]
    return sorted(items, reverse=True)

def main(path, wall=None):
    try: root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"could not read test results {path}: {e}"); print("tests: 0 passed, 1 failed"); return
    items = durations(root)
    total = sum(t for t, _ in items)
    lines = [f"slowest {min(SLOWEST, len(items))} of {len(items)} items (seconds):"]
    lines += [f"{t:8.1f}  {name}" for t, name in items[:SLOWEST]]
    lines.append(f"{total:8.1f}  all {len(items)} items"
                 + (f"; wall time of the run {float(wall):.0f} s" if wall else ""))
    text = "\n".join(lines)
    print(text)
    Path(path).with_name("durations.txt").write_text(text + "\n\nevery item:\n"
                                                     + "\n".join(f"{t:8.1f}  {n}" for t, n in items) + "\n")
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    print(f"tests: {n - failed - skipped} passed, {failed} failed, {skipped} skipped")

if __name__ == "__main__": main(*sys.argv[1:3])
