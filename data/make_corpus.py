"""Rebuild `data/corpus/{en,zh}.jsonl`, the small real-text corpus the default tokenizer is trained on.

Sources (Debian packages; install with `apt-get install fortunes fortunes-min fortunes-zh`):
  * English: the BSD `fortune` cookie files (packages `fortunes`, `fortunes-min`; BSD licence) and the
    prose of Python's own `pydoc_data/topics.py` (PSF licence; on every machine with Python).
  * Chinese: the `chinese`, `tang300` and `song100` files of `fortunes-zh` (GPL-3.0+ compilation; the Tang and
    Song poems themselves are public domain).
See data/NOTICE for the licences. The output is deterministic: same inputs, same bytes.
"""
import json, re, sys
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
OUT = Path(__file__).resolve().parent / "corpus"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
OVERSTRIKE = re.compile(r".\x08")
ZH_FILES = ["chinese", "tang300", "song100"]
SKIP_EN = {"ascii-art", "art"}  # pictures, not prose

def entries(path):
    "Split a fortune file into entries (separated by a line holding only '%'), cleaned of colour codes."
    text = path.read_text(encoding="utf-8", errors="replace")
    for e in re.split(r"\n%\n", text):
        e = OVERSTRIKE.sub("", ANSI.sub("", e)).strip("\n")
        if e.strip() and not e.strip() == "%": yield e

def write(name, records):
    OUT.mkdir(exist_ok=True)
    with open(OUT / name, "w", encoding="utf-8") as f:
        for r in records: f.write(json.dumps({"text": r}, ensure_ascii=False) + "\n")

def main():
    if not FORTUNE_DIR.exists(): sys.exit(f"{FORTUNE_DIR} not found: apt-get install fortunes fortunes-min fortunes-zh")
    zh = [e for n in ZH_FILES for e in entries(FORTUNE_DIR / n)]
    en = [e for p in sorted(FORTUNE_DIR.iterdir())
          if p.is_file() and not p.is_symlink() and p.suffix == "" and p.name not in ZH_FILES + list(SKIP_EN)
          for e in entries(p)]
    from pydoc_data.topics import topics
    en += [topics[k].strip() for k in sorted(topics)]
    write("en.jsonl", en); write("zh.jsonl", zh)
    for n, recs in [("en", en), ("zh", zh)]: print(n, len(recs), "records", sum(map(len, recs)), "chars")

if __name__ == "__main__": main()
