"""Re-wrap only the statements that hold lines longer than the project's limit (120, ruff's E501 in ruff.toml).

    .venv/bin/python tools/fix_long_lines.py            # nbs/*.ipynb, tools/*.py, tests/*.py, setup.py
    .venv/bin/python tools/fix_long_lines.py --check    # only list the long lines, change nothing
    .venv/bin/python tools/fix_long_lines.py nbs/12_serve.ipynb tests/test_serve.py

The code keeps its compact style (one-line `if x: y`, aligned comments): nothing is touched unless it holds a
long line. For each code cell of a notebook (or each .py file), in this order:

1. a statement line whose code fits but whose trailing comment does not: the comment moves onto its own line above;
2. a comment-only line that is too long is wrapped into several comment lines (not `#|` nbdev directives);
3. a line still too long is broken the way this code base wraps by hand, as often as needed (see `candidates`):
   `if x: y` after its colon, `a; b` at the semicolon, inside brackets after a comma with the rest aligned under
   the open bracket or before a loose operator (`x = a if c else b` gets parentheses for that: `x = (a if c` /
   `else b)`; `from m import a, b` too), a long string literal into two (implicit concatenation: `"..." "..."`);
   the continuation lines of a bracket that moved are re-aligned under it, and a short last piece is filled up
   with the items of the next line of the same bracket;
4. where that is not possible, `ruff format --range L:1-L:end` re-formats just the statement(s) on that line
   (ruff extends the range to whole logical lines and leaves the rest of the cell alone); its result is kept
   only if it has fewer long lines.

Lines are handled bottom-up so that the line numbers above stay valid. Every changed cell must have the same
syntax tree as before (only the layout and comments move), else the tool stops. What is still too long afterwards
(a string without spaces, e.g. a regex or a URL) is listed for a hand fix. Cells that do not parse as Python
(IPython `!` / `%` magics) are skipped and listed. Notebooks are read and written with execnb's `read_nb` /
`write_nb` (the layout nbdev_clean keeps), so cell ids, outputs and metadata stay and the diff is only the changed
lines. Run `nbdev_export` afterwards so that minillm/ follows the notebooks.
"""
from __future__ import annotations
import argparse, ast, difflib, io, keyword, re, subprocess, sys, textwrap, tokenize, unicodedata
from pathlib import Path

LIMIT = 120
ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["nbs/*.ipynb", "tools/*.py", "tests/*.py", "setup.py"]
STATS = {"wrapped": 0, "ruff format": []}                   # lines fixed by step 3 / statements by step 4
_PRAGMA = re.compile(r"#\s*(noqa|type:|fmt:|pragma|pyright:|ruff:)")
_BREAK_BEFORE = {"if": 0.5, "else": 0.5, "for": 0.5, "or": 0.55, "and": 0.6}   # breaking before them: the order
_COMPOUND = {"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def", "class", "async"}
_SKIP = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)
_BINARY = {**dict.fromkeys(("==", "!=", "<", ">", "<=", ">="), 0.65), "|": 0.7, "+": 0.75, "-": 0.75, "*": 0.8,
           "@": 0.8}                                    # (not `/`: `path / "name"` reads badly broken)
_ASSIGN = {"=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", ">>=", "<<=", "&=", "^=", "|=", "@="}

# ---- measuring --------------------------------------------------------------------------------------------------

def width(line: str) -> int:
    "Display width of `line` as ruff measures it: wide (CJK) characters count 2, combining marks 0."
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)

def too_long(line: str) -> bool:
    "Over the limit, and not one of the lines ruff's E501 lets pass (a single word, a URL at the end, a pragma)."
    if width(line) <= LIMIT: return False
    s = line.strip()
    if len(s.lstrip("#").split()) <= 1: return False                     # one 'word': nothing to split
    if re.search(r"https?://\S+$", s) and width(line[:line.rfind("http")]) < LIMIT: return False
    return not _PRAGMA.search(line)

def long_lines(src: str) -> list[int]: return [i for i, line in enumerate(src.split("\n"), 1) if too_long(line)]

def same_code(a: str, b: str) -> bool:
    "Do `a` and `b` have the same syntax tree (so they differ only in layout and comments)?"
    try: return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError: return False

def _tokens(src: str) -> list:
    return [t for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type not in (tokenize.INDENT, tokenize.DEDENT)]

def _indent(line: str) -> str: return line[:len(line) - len(line.lstrip())]

# ---- steps 1 and 2: comments ------------------------------------------------------------------------------------

def _comments(src: str) -> dict[int, tuple[int, bool]]:
    "Line -> (column of its comment, does the line start a statement?) for every line holding a comment."
    out, depth, at_start, starts = {}, 0, True, {}
    for tok in _tokens(src):
        row = tok.start[0]
        starts.setdefault(row, at_start)
        if tok.type == tokenize.COMMENT: out[row] = (tok.start[1], starts[row])
        elif tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and depth == 0): at_start = True
        elif tok.type != tokenize.NL:
            at_start = False
            if tok.type == tokenize.OP and tok.string in "([{": depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}": depth -= 1
    return out

def _wrap_comment(indent: str, comment: str) -> list[str]:
    "A too-long comment as several comment lines at `indent`, words kept whole."
    prefix = re.match(r"#+:?\s?", comment).group()
    chunks = textwrap.wrap(comment[len(prefix):], width=max(LIMIT - width(indent) - len(prefix), 40),
                           break_long_words=False, break_on_hyphens=False)
    return [indent + prefix + c for c in chunks] or [indent + comment]

def fix_comments(src: str) -> str:
    "Steps 1 and 2: hoist trailing comments that make a line too long; wrap long comment-only lines."
    lines, info = src.split("\n"), _comments(src)
    for row in sorted(info, reverse=True):
        line = lines[row - 1]
        if not too_long(line): continue
        col, stmt_start = info[row]
        code, comment, indent = line[:col].rstrip(), line[col:], _indent(line)
        if comment.startswith(("#|", "#!", "# %%")) or _PRAGMA.search(comment): continue
        if not code.strip(): lines[row - 1:row] = _wrap_comment(indent, comment)
        elif stmt_start and width(code) <= LIMIT:
            new = [indent + comment] if width(indent + comment) <= LIMIT else _wrap_comment(indent, comment)
            lines[row - 1:row] = new + [code]
    return "\n".join(lines)

# ---- step 3: breaking a line ------------------------------------------------------------------------------------

def _subscript(toks: list, i: int) -> bool:
    "Is the bracket `toks[i]` a subscript / slice (`x[...]`) rather than a list display?"
    p = toks[i - 1] if i else None
    return toks[i].string == "[" and p is not None and (
        (p.type == tokenize.NAME and not keyword.iskeyword(p.string)) or p.type == tokenize.STRING or p.string in ")]}")

def _op_prio(toks: list, i: int) -> float | None:
    "How loose the operator `toks[i]` is to break before (`_BREAK_BEFORE`, binary `_BINARY`); None if it is none."
    tok, prev = toks[i], toks[i - 1] if i else None
    if tok.type == tokenize.NAME and tok.string in _BREAK_BEFORE: return _BREAK_BEFORE[tok.string]
    if tok.type == tokenize.OP and tok.string in _BINARY and prev is not None and not keyword.iskeyword(prev.string) \
            and (prev.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING) or prev.string in ")]}"):
        return _BINARY[tok.string]
    return None

def _string_cuts(s: str) -> list[int]:
    """Offsets in the one-line string literal `s` (prefix and quotes included) where it can be split: after a space,
    or after a `\\n` escape."""
    pre = len(s) - len(s.lstrip("rRbBuUfF"))
    if s[pre:pre + 3] in ('"""', "'''"): return []
    fmt, depth, cuts, i = "f" in s[:pre].lower(), 0, [], pre + 1
    while i < len(s) - 1:
        c = s[i]
        if c == "\\":
            if s[i + 1] == "n" and "r" not in s[:pre].lower() and depth == 0 and i + 2 < len(s) - 1: cuts.append(i + 2)
            i += 2; continue
        if fmt and s[i:i + 2] in ("{{", "}}"): i += 2; continue
        if fmt and c in "{}": depth += 1 if c == "{" else -1
        elif c == " " and depth == 0 and s[i + 1] not in " " + s[pre]: cuts.append(i + 1)
        i += 1
    return cuts

def _split_string(s: str, at: int) -> tuple[str, str]:
    "The literal `s` as two literals split at offset `at`; an f prefix stays only on a piece with a placeholder."
    pre = len(s) - len(s.lstrip("rRbBuUfF"))
    prefix, one, two = s[:pre], s[:at] + s[pre], s[:pre + 1] + s[at:]
    if "f" not in prefix.lower(): return one, two
    plain = prefix.replace("f", "").replace("F", "")
    return tuple(x if "{" in x[pre:] else plain + x[pre:] for x in (one, two))

def candidates(src: str, row: int) -> list[tuple[tuple, list[str], int]]:
    """The places where line `row` of `src` can be broken into two lines whose first fits: (sort key, the 2 lines,
    the bracket depth of the place).
    Best first: after the colon of a one-line compound statement (`if x: y`); at a `;` between simple statements;
    inside brackets (not subscripts), the shallower the better: after a comma, the rest aligned under the open
    bracket (or at the sibling lines' indent for a hanging bracket; not inside `for ... in` targets or lambda
    parameters), before `if` / `else` / `for` / `or` / `and` / a comparison / a binary `|` `+` `-` `*` `@` (the
    loosest operator of the bracket only), after an open bracket (hanging, the rest indented 4; counted one level
    deeper);
    last, inside a string literal after a space (implicit concatenation, the pieces aligned; in parentheses if the
    string is not in brackets; preferably after punctuation, and not leaving a stub). A place after which the rest
    fits on one line wins over any that needs more breaks."""
    lines = src.split("\n")
    line, toks = lines[row - 1], _tokens(src)
    stack, out, first, at_start, colon_seen, blocked, items = [], [], None, True, False, {}, set()
    loosest = {}                    # per bracket: the loosest operator in it (breaking before a tighter one misleads)
    targets = set()                                             # open `for ... in` / `lambda ...:` per bracket
    for i, tok in enumerate(toks):                              # and the brackets that hold several items
        key = stack[-1] if stack else -1
        if tok.type == tokenize.OP and tok.string in "([{": stack.append(i)
        elif tok.type == tokenize.OP and tok.string in ")]}": stack.pop(); targets.discard(key)
        elif tok.string in ("for", "lambda") and tok.type == tokenize.NAME: targets.add(key)
        elif tok.string in ("in", ":") and key in targets: targets.discard(key)
        elif tok.string == "," and stack and key not in targets: items.add(stack[-1])
        elif (p := _op_prio(toks, i)) is not None and tok.string != "for":
            loosest[stack[-1] if stack else -1] = min(loosest.get(stack[-1] if stack else -1, 9), p)
    def add(cut, kind, depth, prio, pieces, sub=0, raw=None):   # `if x: y` and `a; b` are split first in any case
        rest_long = width(pieces[1]) > LIMIT and kind > 1
        if width(pieces[0]) <= LIMIT:
            out.append(((rest_long, kind, depth, prio, sub, -cut), pieces, depth if raw is None else raw))
    def split(a, b, indent, kind, depth, prio, raw=None):
        add(a, kind, depth, prio, [line[:a].rstrip(), indent + line[b:]], raw=raw)
    for i, tok in enumerate(toks):
        if tok.start[0] > row: break
        nxt, prev, depth, here = toks[i + 1] if i + 1 < len(toks) else None, toks[i - 1] if i else None, len(stack), \
            tok.start[0] == row
        if here and first is None and tok.type not in _SKIP: first, first_depth = (tok, at_start), depth
        if here and nxt is not None and first is not None:
            compound = first[1] and first[0].string in _COMPOUND
            rest_ok = nxt.start[0] == row and nxt.type not in _SKIP
            inner = stack[-1] if stack else None
            if tok.string == ":" and depth == 0 and compound and not colon_seen and rest_ok:
                split(tok.end[1], nxt.start[1], _indent(line) + "    ", 0, 0, 0)
            elif tok.string == ";" and depth == 0 and first[1] and not compound and rest_ok:
                split(tok.start[1], nxt.start[1], _indent(line), 1, 0, 0)
            elif inner is not None and not _subscript(toks, inner):
                opener = toks[inner]
                after = next(t for t in toks[inner + 1:] if t.type not in (tokenize.COMMENT, tokenize.NL))
                if opener.start[0] < row and first_depth == depth: indent = _indent(line)  # as this line's siblings
                elif after.start[0] > opener.start[0]: indent = None  # hanging on this line: nothing after it here
                else: indent = " " * width(lines[opener.start[0] - 1][:opener.start[1] + 1])
                if indent is None: pass
                elif tok.string == "," and rest_ok and nxt.string not in ")]}" and depth not in blocked:
                    wide = len(indent) > 72                   # as bad as a hanging break one level deeper
                    split(tok.end[1], nxt.start[1], indent, 2, depth + 2 * wide, 2 * wide, raw=depth)
                elif (p := _op_prio(toks, i)) is not None and prev.start[0] == row and prev.string not in "([{" \
                        and (tok.string == "for" or p <= loosest.get(inner, 9)):
                    # before an operator; in a bracket of several items indented 4 more
                    split(tok.start[1], tok.start[1], indent + "    " * (inner in items), 2, depth, p)
            if tok.type == tokenize.OP and tok.string in "([{" and rest_ok and nxt.string not in ")]}" and \
                    not _subscript(toks, i):
                split(tok.end[1], nxt.start[1], _indent(line) + "    ", 2, depth + 2, 1, raw=depth + 1)
            if tok.string == ":" and depth == 0: colon_seen = True
        if here and tok.type == tokenize.STRING and tok.end[0] == row and first is not None:
            c0, c1, paren = tok.start[1], tok.end[1], not stack
            joined = tokenize.STRING in (prev.type if prev else None, nxt.type if nxt else None)
            for at in [] if paren and joined else _string_cuts(tok.string):     # "a" "b": no parentheses
                one, two = _split_string(tok.string, at)
                if paren: pieces = [line[:c0] + "(" + one, " " * (width(line[:c0]) + 1) + two + ")" + line[c1:]]
                else: pieces = [line[:c0] + one, " " * width(line[:c0]) + two + line[c1:]]
                # after punctuation in the second half of the line, else not leaving a stub of a few words
                punct = (tok.string[at - 2] in ",;:.)" or tok.string[at - 2:at] == "\\n") and \
                    width(pieces[0]) >= LIMIT // 2
                add(c0 + at, 3, depth, 0, pieces, sub=0 if punct else 1 if len(tok.string) - at >= 25 else 2)
        if tok.type == tokenize.NAME and tok.string in ("for", "lambda") and stack: blocked[depth] = tok.string
        elif tok.type == tokenize.NAME and tok.string == "in" and blocked.get(depth) == "for": del blocked[depth]
        elif tok.string == ":" and blocked.get(depth) == "lambda": del blocked[depth]
        if tok.type == tokenize.OP and tok.string in "([{": stack.append(i)
        elif tok.type == tokenize.OP and tok.string in ")]}":
            stack.pop(); blocked.pop(len(stack), None)
        if tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and not stack): at_start = True
        elif tok.type not in _SKIP: at_start = False
    return out

def parenthesize(src: str, row: int) -> tuple[str, int, int] | None:
    """`src` with parentheses around the expression part of the one-line statement on `row`: after `import` /
    `return` / the assignment, the condition of `if` / `elif` / `while` / `assert`; and the columns of "(" and ")".
    None when line `row` does not start such a statement."""
    lines, toks = src.split("\n"), _tokens(src)
    depth, i0 = 0, None
    for i, t in enumerate(toks):
        if t.start[0] == row and t.type not in _SKIP: i0 = i; break
        if t.string in "([{" and t.type == tokenize.OP: depth += 1
        elif t.string in ")]}" and t.type == tokenize.OP: depth -= 1
    if i0 is None or depth or (i0 and toks[i0 - 1].type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT)):
        return None
    mine = [t for t in toks[i0:] if t.start[0] == row]
    code, ends = [t for t in mine if t.type not in _SKIP], any(t.type == tokenize.NEWLINE for t in mine)
    kw, depth, at, stop = code[0].string, 0, None, len(code)          # the "(" goes before code[at], ")" after stop-1
    for j, t in enumerate(code):
        if t.string in "([{": depth += 1
        elif t.string in ")]}": depth -= 1
        elif depth: continue
        elif kw in ("if", "elif", "while") and t.string == ":" or kw == "assert" and t.string == ",":
            stop = j; break
        elif t.string == "lambda": break
        elif t.string in _ASSIGN or (t.string == "import" and kw == "from"): at = j + 1
    header = kw in ("if", "elif", "while")
    if header or kw in ("return", "assert"): at = 1
    if (header and stop == len(code)) or (not header and (not ends or kw in _COMPOUND)): return None
    if at is None or at >= stop or (kw == "from" and code[at].string == "("): return None
    line, o, c = lines[row - 1], code[at].start[1], code[stop - 1].end[1]
    lines[row - 1] = line[:o] + "(" + line[o:c] + ")" + line[c:]
    return "\n".join(lines), o, c + 1

def wrap_once(src: str, row: int) -> str | None:
    """Break line `row` of `src` once at the best of `candidates`, or after putting the right-hand side of a simple
    statement in parentheses when that gives a break at its top level; None when there is no place."""
    cands = candidates(src, row)
    alt = parenthesize(src, row)
    if alt is not None:                                       # a top-level break inside the new parentheses
        top = [(k, p, d) for k, p, d in candidates(alt[0], row) if k[1] == 2 and d == 1 and alt[1] < -k[5] <= alt[2]]
        if any(k[3] != 1 for k, _, _ in top):                                          # not just after the "("
            cands += [((k[0], 2, 0.5 + k[2] - 1, *k[3:]), p, d) for k, p, d in top]
    if not cands: return None
    lines = src.split("\n")
    lines[row - 1:row] = min(cands, key=lambda c: c[0])[1]
    return "\n".join(lines)

def _openers(src: str) -> dict[int, tuple[int, int]]:
    """For each line that starts inside brackets: the column where its first token would be aligned, under the open
    bracket (for a hanging bracket: at the first line after it), and the index of that bracket's token. Lines that
    start inside a multi-line string are left out."""
    lines, out, stack, seen = src.split("\n"), {}, [], set()
    toks = _tokens(src)
    for i, tok in enumerate(toks):
        r = tok.start[0]
        if r not in seen and tok.type not in (tokenize.NL, tokenize.NEWLINE):
            seen.add(r)
            if stack and (i == 0 or toks[i - 1].end[0] < r):
                o = toks[stack[-1]]
                after = next(t for t in toks[stack[-1] + 1:] if t.type not in (tokenize.COMMENT, tokenize.NL))
                if after.start[0] > o.start[0]: col = width(lines[after.start[0] - 1][:after.start[1]])  # hanging
                else: col = width(lines[o.start[0] - 1][:o.start[1] + 1])
                out[r] = (col, stack[-1])
        if tok.type == tokenize.OP and tok.string in "([{": stack.append(i)
        elif tok.type == tokenize.OP and tok.string in ")]}": stack.pop()
    return out

def realign(old: str, new: str, row: int) -> str:
    "After line `row` of `old` became two in `new`: re-align the following lines that were aligned under a bracket."
    was, old_lines = _openers(old), old.split("\n")
    r = row + 1
    while r in was:
        line = old_lines[r - 1]
        if width(_indent(line)) == was[r][0]:
            now = _openers(new).get(r + 1)
            if now is not None and now[0] != was[r][0]:
                lines = new.split("\n")
                lines[r] = " " * now[0] + lines[r].lstrip()
                new = "\n".join(lines)
        r += 1
    return new

def _item_ends(src: str, row: int) -> list[int]:
    "Columns just after the commas on line `row` that separate items of the bracket the line starts in."
    stack, home, out = [], None, []
    for t in _tokens(src):
        if t.start[0] > row: break
        if t.start[0] == row and home is None: home = stack[-1] if stack else None
        if t.start[0] == row and t.string == "," and stack and stack[-1] == home: out.append(t.end[1])
        if t.type == tokenize.OP and t.string in "([{": stack.append(t.start)
        elif t.type == tokenize.OP and t.string in ")]}" and stack: stack.pop()
    return out

def _merge_step(src: str, row: int) -> tuple[str, int]:
    "One step of `merge_tail`: (new source, 0 if nothing changed / 1 if two lines became one / 2 if items moved up)."
    lines, at = src.split("\n"), _openers(src)
    if row >= len(lines) or row not in at or row + 1 not in at or at[row] != at[row + 1]: return src, 0
    one, two = lines[row - 1].rstrip(), lines[row]
    lit = re.fullmatch(r"\s*([rRbBuUfF]*)([\"'])(.*)\2", one)
    nxt = re.match(r"\s*([rRbBuUfF]*)([\"'])", two)
    if lit and nxt and lit.group(1, 2) == nxt.group(1, 2) and not lit.group(3).endswith("\\"):
        joined = one[:-1] + two[nxt.end():]                     # "a " + "b" -> "a b"
    elif one.endswith(",") and "#" not in one and two.lstrip()[:1] not in ")]}": joined = one + " " + two.lstrip()
    else: return src, 0
    if width(joined) <= LIMIT: lines[row - 1:row + 1], how = [joined], 1
    elif not lit:                                       # move the first items of the next line up, as many as fit
        fits = [c for c in _item_ends(src, row + 1) if width(one + " " + two[:c].lstrip()) <= LIMIT and two[c:].strip()]
        if not fits: return src, 0
        lines[row - 1:row + 1], how = [one + " " + two[:fits[-1]].lstrip(), _indent(two) + two[fits[-1]:].lstrip()], 2
    else: return src, 0
    new = "\n".join(lines)
    return (new, how) if same_code(src, new) else (src, 0)

def merge_tail(src: str, row: int) -> str:
    """Line `row` (the last piece of a break) filled up from the next lines while they are items of the same
    bracket, aligned alike (no lonely `0,` left behind): joined with the next line when the two fit, else with the
    first items of the next line that fit, and so on down the bracket. Two pieces of one implicitly concatenated
    string ("a " / "b") become one when they fit."""
    for _ in range(50):
        src, how = _merge_step(src, row)
        if how == 0: break
        if how == 2: row += 1
    return src

def wrap_line(src: str, row: int) -> str | None:
    "Step 3: break line `row` (and then its remainders) until every piece fits; None when that cannot be done."
    new = src
    while too_long(new.split("\n")[row - 1]):
        w = wrap_once(new, row)
        if w is None: return None
        new = realign(new, w, row)
        row += 1
    new = merge_tail(new, row)
    return new if same_code(src, new) else None

# ---- step 4: ruff format ----------------------------------------------------------------------------------------

def _ruff() -> list[str]:
    "The ruff next to this interpreter (the project's .venv), else `python -m ruff`."
    exe = Path(sys.executable).with_name("ruff")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ruff"]

def _drop_added_blank_lines(old: str, new: str) -> str:
    "`new` without the blank lines that ruff added around the statement it formatted (after imports, nested defs)."
    a, b = old.split("\n"), new.split("\n")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        block = b[j1:j2]
        if op in ("insert", "replace"):
            while block and not block[0].strip() and not (i1 < i2 and not a[i1].strip()): block = block[1:]
            while block and not block[-1].strip() and not (i1 < i2 and not a[i2 - 1].strip()): block = block[:-1]
        out += block
    return "\n".join(out)

def ruff_range(src: str, row: int) -> str:
    "Step 4 for one line: `ruff format` of the statement(s) on line `row` of `src` (unchanged if that does not help)."
    end = len(src.split("\n")[row - 1]) + 1
    cmd = _ruff() + ["format", "--isolated", f"--line-length={LIMIT}", "--config", "format.quote-style='preserve'",
                     f"--range={row}:1-{row}:{end}", "--stdin-filename", "cell.py", "-"]
    out = subprocess.run(cmd, input=src, capture_output=True, text=True, check=True).stdout
    if not src.endswith("\n") and out.endswith("\n"): out = out[:-1]
    out = _drop_added_blank_lines(src, out)
    return out if len(long_lines(out)) < len(long_lines(src)) and same_code(src, out) else src

# ---- driver -----------------------------------------------------------------------------------------------------

def fix_source(src: str, name: str = "") -> str:
    "All four steps on one piece of Python source (a cell or a file); the result has the same syntax tree."
    new = fix_comments(src)
    for _ in range(3):                          # re-aligned lines below a break can need a second pass
        rows = long_lines(new)
        for row in reversed(rows):
            wrapped = wrap_line(new, row)
            if wrapped is not None: STATS["wrapped"] += 1
            else:
                wrapped = ruff_range(new, row)
                if wrapped != new: STATS["ruff format"].append(f"{name}:{row}")
            new = wrapped
        if len(long_lines(new)) in (0, len(rows)): break
    ops = difflib.SequenceMatcher(None, src.split("\n"), new.split("\n"), autojunk=False).get_opcodes()
    changed = {r + 1 for op, _, _, j1, j2 in ops if op != "equal" for r in range(j1, j2)}
    for row in sorted(changed, reverse=True):   # pieces that re-alignment let fit together again
        if row + 1 in changed: new = merge_tail(new, row)
    if not same_code(src, new): raise ValueError(f"re-wrapping changed the code of {name}:\n{new}")
    return new

def process(path: Path, check: bool, report: dict) -> bool:
    "Fix (or with `check` only list) one notebook or .py file; True when it changed."
    rel = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    if path.suffix == ".ipynb":
        from execnb.nbio import read_nb, write_nb
        nb = read_nb(path)
        pieces = [(f"{rel} cell {c.idx_} ({c.id})", c) for c in nb.cells if c.cell_type == "code"]
    else: nb, pieces = None, [(str(rel), None)]
    changed = False
    for name, cell in pieces:
        src = cell.source if cell is not None else path.read_text(encoding="utf-8")
        rows = long_lines(src)
        if not rows: continue
        report["before"] += len(rows)
        if not same_code(src, src):
            report["skipped"].append(f"{name}: does not parse as Python (magics?), long lines {rows}")
            report["after"] += len(rows); continue
        new = src if check else fix_source(src, name)
        left = long_lines(new)
        report["after"] += len(left)
        report["left"] += [f"{name}:{r}: {new.split(chr(10))[r - 1].strip()[:90]}" for r in left]
        if new != src:
            changed = True
            if cell is not None: cell.set_source(new)
            else: path.write_text(new, encoding="utf-8")
    if changed and nb is not None: write_nb(nb, path)
    return changed

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="*", help=f"notebooks / .py files (default: {' '.join(DEFAULT)})")
    p.add_argument("--check", action="store_true", help="only list the long lines")
    a = p.parse_args(argv)
    paths = [Path(x) for x in a.paths] or sorted(f for g in DEFAULT for f in ROOT.glob(g))
    report = dict(before=0, after=0, skipped=[], left=[])
    changed = [str(x) for x in paths if process(x, a.check, report)]
    print(f"lines over {LIMIT}: {report['before']} before, {report['after']} after; {len(changed)} files changed")
    if not a.check: print(f"wrapped: {STATS['wrapped']} lines; ruff format: {len(STATS['ruff format'])} statements")
    for line in STATS["ruff format"]: print("ruff format:", line)
    for line in report["skipped"]: print("skipped:", line)
    for line in report["left"]: print("still long:", line)
    return 1 if report["after"] else 0

if __name__ == "__main__": sys.exit(main())
