"""
Markdown → A4 PDF, typeset with matplotlib alone: how report.py turns REPORT.md into REPORT.pdf.

    from typeset import write_pdf
    write_pdf(markdown, folder, "REPORT.pdf", code={"vae.py": source, ...})

It reads a small subset of Markdown: `#`, `##` and `###` headings (deeper ones are set as `###`), paragraphs, `- `
bullets, `> ` quotes, pipe tables, `![caption](file.png)` figures (the file relative to `folder`), and **bold** and
`code` inside text. The `#` heading and the paragraph under it make the title block. Figures are numbered in order
and scaled to the text width. Each file in `code` is printed in monospace with line numbers, in an appendix that
starts on a new page.

The layout takes two passes. First the text is cut into pieces that are never split: a line of text, a table row, or a
figure with its caption. Each piece's height is measured, and the pieces are stacked onto pages. Only then are the
pages drawn, so each page can show its number out of the total.
"""
import re
import textwrap
from collections import namedtuple
from functools import lru_cache
from itertools import takewhile

from matplotlib import rc_context
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.image import imread
from matplotlib.lines import Line2D

# Every length is in points (1/72 inch); y grows upwards from the bottom of the page, as in PDF
WIDTH, HEIGHT = 595.3, 841.9   # A4 portrait
MARGIN = 56.7                  # 2 cm on every side; nothing is drawn outside it
LEFT, RIGHT, TOP = MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN
TEXT_WIDTH = RIGHT - LEFT
BOTTOM = MARGIN + 24           # the page number sits in the 24 pt below the text
BODY = 10                      # body text size
HEADING = {1: 20, 2: 14, 3: 11.5}
TABLE = 9                      # a table too wide for the page at this size is set smaller
CAPTION = 9
CODE = 6.5                     # lines of up to ~115 characters fit the text width at this size; longer ones wrap
APPENDIX = "Appendix: the code"
GREY = "0.35"

# A piece of a page that is never split: `height` points tall, `space` points below the piece above it (dropped at
# the top of a page), kept on one page with the `keep` pieces after it, and drawn by draw(fig, top). `repeat` is
# drawn first if the piece starts a new page: a table's header.
Piece = namedtuple("Piece", "height draw space keep repeat", defaults=(0.0, 0, None))
NEW_PAGE = Piece(0.0, None)


# ---------------------------------------------------------------------------------------------------------------
# Fonts and measured widths

@lru_cache(maxsize=None)
def font(kind, size):
    """kind: regular, bold or mono. DejaVu comes with matplotlib, so every machine sets the same glyphs; the
    monospace falls back to the proportional font for the few glyphs it lacks (ℓ)."""
    if kind == "mono":
        return FontProperties(family=["DejaVu Sans Mono", "DejaVu Sans"], size=size)
    return FontProperties(family=["DejaVu Sans"], weight="bold" if kind == "bold" else "normal", size=size)


@lru_cache(maxsize=1)
def renderer():
    return RendererAgg(1, 1, 720)   # at 10 pixels a point, hinting no longer rounds the widths (a PDF is unhinted)


def ink(text, kind, size):
    return renderer().get_text_width_height_descent(text, font(kind, size), ismath=False)[0] / 10


@lru_cache(maxsize=None)
def width(text, kind, size):
    """How far `text` moves the pen. Its ink alone is narrower by the side bearings (and a space has none), so it is
    measured between two bars."""
    return ink(f"|{text}|", kind, size) - ink("||", kind, size)


def space_width(size):
    return width(" ", "regular", size)


def put(fig, x, y, text, kind, size, **kw):
    """One text artist at (x, y) in points; y is its baseline. parse_math=False: a `$` in code is just a `$`."""
    fig.text(x / WIDTH, y / HEIGHT, text, fontproperties=font(kind, size), va=kw.pop("va", "baseline"),
             parse_math=False, **kw)


def rule(fig, x0, x1, y, lw=0.6):
    fig.add_artist(Line2D([x0 / WIDTH, x1 / WIDTH], [y / HEIGHT, y / HEIGHT], lw=lw, color="black"))


# ---------------------------------------------------------------------------------------------------------------
# Text: **bold** and `code` spans, words, lines

SPAN = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def spans(text, kind="regular"):
    """[(text, kind), …]: the text cut where **bold** or `code` begins or ends."""
    out, at = [], 0
    for m in SPAN.finditer(text):
        out.append((text[at:m.start()], kind))
        out += spans(m[1], "bold") if m[1] is not None else [(m[2], "mono")]
        at = m.end()
    return [s for s in out + [(text[at:], kind)] if s[0]]


def plain(text):
    return "".join(t for t, _ in spans(text))


def words(text, kind="regular"):
    """The words of `text`, each a list of (fragment, kind): a word such as (`--quick`) changes font inside."""
    result, glued = [], False
    for chunk, k in spans(text, kind):
        for i, part in enumerate(chunk.split(" ")):
            glued = glued and i == 0
            if part:
                if glued:
                    result[-1].append((part, k))
                else:
                    result.append([(part, k)])
                glued = True
    return result


def size_of(kind, size):
    return size * 0.9 if kind == "mono" else size   # monospace looks larger at the same size


def word_width(word, size):
    return sum(width(t, k, size_of(k, size)) for t, k in word)


def fit(word, size, room):
    """A word wider than a whole line (a long path, say), cut into pieces that fit."""
    if len(word) > 1 or word_width(word, size) <= room:
        return [word]
    (text, kind), = word
    n = max(1, int(len(text) * room / word_width(word, size)) - 1)
    return [[(text[i:i + n], kind)] for i in range(0, len(text), n)]


def wrap(text, size, room, kind="regular"):
    """Greedy line breaking: each line holds as many words as fit in `room` points."""
    lines, line, used = [], [], 0.0
    for word in (piece for word in words(text, kind) for piece in fit(word, size, room)):
        w = word_width(word, size)
        if line and used + space_width(size) + w > room:
            lines.append(line)
            line, used = [], 0.0
        used += (space_width(size) if line else 0) + w
        line.append(word)
    return lines + [line] if line else lines


def line_width(line, size):
    return sum(word_width(w, size) for w in line) + space_width(size) * (len(line) - 1)


def draw_line(fig, x, y, line, size, **kw):
    """One line of words, as one text artist per run of the same font."""
    runs = []   # [text, kind, space before]
    for i, word in enumerate(line):
        for j, (text, kind) in enumerate(word):
            space = i > 0 and j == 0
            if runs and runs[-1][1] == kind:
                runs[-1][0] += (" " if space else "") + text
            else:
                runs.append([text, kind, space])
    for text, kind, space in runs:
        x += space_width(size) if space else 0
        put(fig, x, y, text, kind, size_of(kind, size), **kw)
        x += width(text, kind, size_of(kind, size))


def text_pieces(text, size, *, indent=0.0, space=0.0, keep_last=0, centre=False, kind="regular", mark=None, **kw):
    """A paragraph as one piece per line. `mark(fig, top, first)` draws what sits left of a line (a bullet, a bar)."""
    pitch, room = 1.4 * size, TEXT_WIDTH - indent
    lines = wrap(text, size, room - 1, kind)

    def draw(fig, top, line, first):
        x = LEFT + indent + ((room - line_width(line, size)) / 2 if centre else 0)
        draw_line(fig, x, top - 1.05 * size, line, size, **kw)
        if mark:
            mark(fig, top, first)
    return [Piece(pitch, lambda fig, top, line=line, first=i == 0: draw(fig, top, line, first),
                  space if i == 0 else 0.0, keep_last if i == len(lines) - 1 else 0)
            for i, line in enumerate(lines)]


def heading_pieces(text, level):
    """A heading in one piece, kept on the page with the two lines after it."""
    size = HEADING[level]
    lines = text_pieces(text, size, kind="bold", centre=level == 1)

    def draw(fig, top):
        for line in lines:
            line.draw(fig, top)
            top -= line.height
    return [Piece(sum(line.height for line in lines), draw, space={1: 0, 2: 18, 3: 12}[level], keep=2)]


# ---------------------------------------------------------------------------------------------------------------
# Tables: a header row in bold, numbers right-aligned, rules above, below and under the header

NUMBER = re.compile(r"[−+-]?\d[\d,]*(\.\d+)?\s*%?")


def header_width(header, size, depth, least):
    """The narrowest column, at least `least` wide, in which `header` takes at most `depth` lines."""
    w = header.split()
    spans = sorted(width(" ".join(w[i:j]), "bold", size) for i in range(len(w)) for j in range(i + 1, len(w) + 1))
    return next(x for x in [least] + [x for x in spans if x > least]
                if len(wrap(header, size, x + 0.5, "bold")) <= depth)


def table_pieces(rows):
    cells = [[plain(c.strip()) for c in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]   # cells[1] is the | --- | line
    body = [(row + [""] * len(header))[:len(header)] for row in body]
    columns = list(zip(*body)) if body else [()] * len(header)
    numeric = [any(c for c in col) and all(NUMBER.fullmatch(c) for c in col if c) for col in columns]
    pad = 8.0   # between columns
    # A column is at least as wide as its widest cell and the longest word of its header. Widths grow with the
    # font size, so a table too wide for the page is set at the size that makes it fit.
    need = [max([width(c, "regular", TABLE) for c in col] + [width(w, "bold", TABLE) for w in h.split()] + [0])
            for col, h in zip(columns, header)]
    size = min(TABLE, 0.98 * TABLE * (TEXT_WIDTH - pad * len(header)) / sum(need))
    need = [n * size / TABLE for n in need]
    # Then the headers take as few lines as the text width allows
    for depth in range(1, 1 + max(len(h.split()) for h in header)):
        widths = [header_width(h, size, depth, n) for h, n in zip(header, need)]
        if sum(widths) + pad * len(header) <= TEXT_WIDTH:
            break
    edges = [LEFT + sum(widths[:j]) + pad * j for j in range(len(widths) + 1)]
    pitch, right = 1.5 * size, edges[-1] - pad

    def cell(fig, j, y, text, kind):
        if numeric[j]:
            put(fig, edges[j + 1] - pad, y, text, kind, size, ha="right")
        else:
            put(fig, edges[j], y, text, kind, size)
    head_lines = [[" ".join("".join(t for t, _ in w) for w in line) for line in wrap(h, size, w + 0.5, "bold")]
                  for h, w in zip(header, widths)]
    depth = max(len(lines) for lines in head_lines)

    def draw_header(fig, top):
        rule(fig, LEFT, right, top - 1, lw=0.9)
        for j, lines in enumerate(head_lines):
            for i, text in enumerate(lines):   # header lines sit on the bottom of the header row
                cell(fig, j, top - 3 - (depth - len(lines) + i) * pitch - 1.05 * size, text, "bold")
        rule(fig, LEFT, right, top - 3 - depth * pitch - 2)
    header_piece = Piece(depth * pitch + 7, draw_header, 8.0, keep=2)

    def draw_row(fig, top, row, last):
        for j, text in enumerate(row):
            if text:
                cell(fig, j, top - 2 - 1.05 * size, text, "regular")
        if last:
            rule(fig, LEFT, right, top - pitch - 3, lw=0.9)
    rows = [Piece(pitch + (4 if i == len(body) - 1 else 0),
                  lambda fig, top, row=row, last=i == len(body) - 1: draw_row(fig, top, row, last),
                  repeat=header_piece) for i, row in enumerate(body)]
    return [header_piece] + rows


# ---------------------------------------------------------------------------------------------------------------
# Figures: scaled to the text width, or smaller if that would not fit on a page; a numbered caption below

def figure_pieces(caption, path, number):
    caption = f"**Figure {number}.** {caption}"
    if not path.is_file():
        return text_pieces(f"{caption} (missing: {path.name})", CAPTION, space=10)
    image = imread(path)
    lines = wrap(caption, CAPTION, TEXT_WIDTH - 1)
    text_height = 6 + len(lines) * 1.4 * CAPTION
    w = TEXT_WIDTH
    h = w * image.shape[0] / image.shape[1]
    if h > TOP - BOTTOM - text_height - 48:   # a page-tall figure leaves room for the lines that introduce it
        h = TOP - BOTTOM - text_height - 48
        w = h * image.shape[1] / image.shape[0]

    def draw(fig, top):
        x = LEFT + (TEXT_WIDTH - w) / 2
        ax = fig.add_axes((x / WIDTH, (top - h) / HEIGHT, w / WIDTH, h / HEIGHT))
        ax.imshow(image, interpolation="none", aspect="auto")   # "none": the PNG goes into the PDF as it is
        ax.set_axis_off()
        for i, line in enumerate(lines):
            draw_line(fig, LEFT, top - h - 6 - i * 1.4 * CAPTION - 1.05 * CAPTION, line, CAPTION)
    return [Piece(h + text_height, draw, 12.0)]


# ---------------------------------------------------------------------------------------------------------------
# The appendix: each file under a header, in monospace with line numbers; lines too long for the page wrap

def code_pieces(name, source):
    lines = source.rstrip("\n").split("\n")
    digits = len(str(len(lines)))
    columns = int((TEXT_WIDTH - 1) / (width("0" * 100, "mono", CODE) / 100)) - digits - 2
    pitch = 1.22 * CODE

    def draw_header(fig, top):
        put(fig, LEFT, top - 11, name, "bold", 10.5)
        put(fig, RIGHT, top - 11, f"{len(lines)} lines", "regular", 8, ha="right", color=GREY)
        rule(fig, LEFT, RIGHT, top - 16)
    pieces = [Piece(20.0, draw_header, 16.0, keep=3)]
    for number, line in enumerate(lines, 1):
        indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
        parts = [line] if len(line) <= columns else textwrap.wrap(line, columns, subsequent_indent=indent,
                                                                  break_on_hyphens=False)
        for i, part in enumerate(parts):   # a wrapped line's number is printed once; ↪ marks what follows on
            text = f"{number if i == 0 else '↪':>{digits}}  {part}".rstrip()
            pieces.append(Piece(pitch, lambda fig, top, text=text: put(fig, LEFT, top - CODE, text, "mono", CODE)))
    return pieces


# ---------------------------------------------------------------------------------------------------------------
# Markdown → blocks → pieces → pages

STARTS_BLOCK = re.compile(r"#{1,6} |\||- |>|!\[")
IMAGE = re.compile(r"!\[(.*)\]\((.+)\)")


def blocks(markdown):
    """(kind, content) for each block: heading, image, table, bullets, quote or paragraph."""
    lines, i = markdown.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6}) (.*)", line):
            yield "heading", (min(len(m[1]), 3), m[2].strip())   # ####… are set as ###
            i += 1
        elif m := IMAGE.fullmatch(line.strip()):
            yield "image", (m[1], m[2])
            i += 1
        elif line.startswith("|"):
            rows = list(takewhile(lambda s: s.startswith("|"), lines[i:]))
            yield "table", rows
            i += len(rows)
        elif line.startswith(">"):
            quote = list(takewhile(lambda s: s.startswith(">"), lines[i:]))
            yield "quote", " ".join(q[1:].strip() for q in quote)
            i += len(quote)
        elif line.startswith("- "):   # bullets; a line that starts with no "- " continues the item above
            items = [line[2:]]
            for more in takewhile(lambda s: s.strip() and (s.startswith("- ") or not STARTS_BLOCK.match(s)),
                                  lines[i + 1:]):
                if more.startswith("- "):
                    items.append(more[2:])
                else:
                    items[-1] += " " + more.strip()
                i += 1
            yield "bullets", [item.strip() for item in items]
            i += 1
        else:
            paragraph = [line] + list(takewhile(lambda s: s.strip() and not STARTS_BLOCK.match(s), lines[i + 1:]))
            yield "paragraph", " ".join(s.strip() for s in paragraph)
            i += len(paragraph)


def bullet(fig, top, first):
    if first:
        put(fig, LEFT + 4, top - 1.05 * BODY, "•", "regular", BODY)


def bar(fig, top, first):
    fig.add_artist(Line2D([(LEFT + 2) / WIDTH] * 2, [top / HEIGHT, (top - 1.4 * BODY) / HEIGHT], lw=2,
                          color="0.6"))


def pieces(markdown, folder, code=None):
    out, figures, previous = [], 0, None
    items = list(blocks(markdown))
    for n, (kind, content) in enumerate(items):
        before_image = n + 1 < len(items) and items[n + 1][0] == "image"
        if kind == "heading":
            out += heading_pieces(content[1], content[0])
        elif kind == "image":
            figures += 1
            out += figure_pieces(content[0], folder / content[1], figures)
        elif kind == "table":
            out += table_pieces(content)
        elif kind == "bullets":
            for i, item in enumerate(content):
                out += text_pieces(item, BODY, indent=16, space=7 if i == 0 else 3, mark=bullet)
        elif kind == "quote":
            out += text_pieces(content, BODY, indent=12, space=8, mark=bar)
        elif previous == ("heading", 1):   # the title block's second line
            out += text_pieces(content, 11, space=6, centre=True, color=GREY) + [Piece(10.0, lambda fig, top: None)]
        else:   # a paragraph that introduces a figure stays on the figure's page
            out += text_pieces(content, BODY, space=7, keep_last=1 if before_image else 0)
        previous = (kind, content[0] if kind == "heading" else None)
    if code:
        out += [NEW_PAGE] + heading_pieces(APPENDIX, 2)
        for name, source in code.items():
            out += code_pieces(name, source)
    return out


def paginate(pieces):
    """Stack the pieces onto pages, top to bottom: [[(piece, top), …], …]."""
    pages, page, y = [], [], TOP
    for i, p in enumerate(pieces):
        if p.draw is None or page and y - (p.space + p.height + sum(
                q.space + q.height for q in takewhile(lambda q: q.draw, pieces[i + 1:i + 1 + p.keep]))) < BOTTOM:
            if page:
                pages.append(page)
            page, y = [], TOP
            if p.draw is None:
                continue
            if p.repeat:
                page.append((p.repeat, y))
                y -= p.repeat.height
        y -= p.space if page else 0
        page.append((p, y))
        y -= p.height
    return pages + [page] if page else pages


def pages(markdown, folder, code=None):
    """Each page of the typeset document, as a matplotlib Figure (not registered with pyplot: nothing to close)."""
    laid_out = paginate(pieces(markdown, folder, code))
    for number, page in enumerate(laid_out, 1):
        fig = Figure(figsize=(WIDTH / 72, HEIGHT / 72), dpi=72)
        for piece, top in page:
            piece.draw(fig, top)
        put(fig, WIDTH / 2, MARGIN, f"{number} / {len(laid_out)}", "regular", 8.5, ha="center", va="bottom",
            color=GREY)
        yield fig


def write_pdf(markdown, folder, path, code=None):
    title = next((content[1] for kind, content in blocks(markdown) if kind == "heading"), "")
    # Type 42 (TrueType) fonts: matplotlib before 3.11 draws the glyphs of a Type 3 font beyond Latin-1 (∂, α, →) as
    # shapes without text, which a reader's search and pdftotext cannot find. No creation date: the same inputs give
    # the same bytes.
    with rc_context({"pdf.fonttype": 42}), \
            PdfPages(path, metadata={"CreationDate": None, "Title": plain(title)}) as pdf:
        for fig in pages(markdown, folder, code):
            pdf.savefig(fig)
