"""The documentation stays true: README.md, CONTRIBUTING.md and docs/*.md.

- every relative link (and image) names a file or folder of the repository, and every
  ``#anchor`` a heading of the page it points to, slugged as GitHub does;
- every ``bin/<verb> --option`` / ``p2phd-<verb> --option`` shown in code is an option of that
  verb (its option dataclass, read without starting MindSpore), or an NVIDIA spelling the verb
  accepts (core/nvidia_options.py), and an NVIDIA option the verb refuses is never shown;
- every ``make <target>`` shown in code is a target of the Makefile, and the options its
  ``EXTRA=``, ``RENDER_EXTRA=``, ... variables pass on are options of their verb.
"""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from p2phd.core import nvidia_options

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
# verb -> its option dataclass (module, class): the classes parse_options gets in each verb
OPTIONS = {
    "prepare": ("p2phd.data.prepare", "PrepareOptions"),
    "train": ("p2phd.training.train", "TrainOptions"),
    "precompute": ("p2phd.features.precompute", "PrecomputeOptions"),
    "cluster": ("p2phd.features.cluster", "ClusterOptions"),
    "render": ("p2phd.rendering.options", "RenderOptions"),
    "import": ("p2phd.interop.importer", "ImportOptions"),
    "export": ("p2phd.deploy.export", "ExportOptions"),
    "evaluate": ("p2phd.metrics.evaluate", "EvaluateOptions"),
    "edit": ("p2phd.editing.options", "EditOptions"),
}
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")
VERB = re.compile(r"(?:\bbin/|\bp2phd-)(" + "|".join(OPTIONS) + r")\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code), duplicates numbered as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+?)#*\s*$", line)
        if m:
            s = slug(m.group(1).strip())
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def broken_links(page: Path, text: str) -> list[str]:
    """Every relative link of text (a page's content) that does not resolve."""
    bad = []
    prose = INLINE.sub("", FENCE.sub("", text))
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or REPO not in [dest, *dest.parents]:
            bad.append(f"{page.name}: {target}: no such file in the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{page.name}: {target}: no heading with that anchor in {dest.name}")
    return bad


def code_of(text: str) -> list[str]:
    """The code a page shows: fenced blocks (continued lines joined) and inline spans."""
    blocks = [b.replace("\\\n", " ") for b in FENCE.findall(text)]
    spans = [m.group(2) for m in INLINE.finditer(FENCE.sub("", text))]
    return blocks + spans


def commands(code: str) -> list[list[str]]:
    """Shell-like commands of a piece of code: comments dropped, split at pipes, ; and &&.

    Tables escape the pipe of an alternative (``--phase train\\|test``) and synopses bracket
    optional parts: both become plain words."""
    out = []
    for line in code.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).replace("\\|", " ")
        for part in re.split(r"\||;|&&|\$\(|\)", line):
            words = re.sub(r"[\[\]]", " ", part).split()
            if words:
                out.append(words)
    return out


def option_class(verb: str) -> type:
    module, name = OPTIONS[verb]
    return getattr(importlib.import_module(module), name)


def own_flags(cls: type) -> set[str]:
    flags = {"--help", "--dry-run", "--verbose"}
    for f in dataclasses.fields(cls):
        flags.update(f.metadata.get("args", [f"--{f.name}"]))
    return flags


def wrong_options(verb: str, words: list[str]) -> list[str]:
    """The --options of one command line that the verb does not take."""
    cls, bad = option_class(verb), []
    own = own_flags(cls)
    for i, word in enumerate(words):
        opt = word.split("=")[0]
        if not opt.startswith("--") or opt in own or not re.fullmatch(r"--\w[\w-]*", opt):
            continue
        value = words[i + 1 : i + 2] if "=" not in word else [word.split("=", 1)[1]]
        value = [v for v in value if not v.startswith("-")]
        if opt[2:] not in nvidia_options.RULES:
            bad.append(f"bin/{verb} {opt}: not an option of {verb}")
            continue
        try:
            rewritten = nvidia_options.rewrite(cls, [opt, *value], verb).argv
        except nvidia_options.Refused as exc:
            bad.append(f"bin/{verb} {opt}: NVIDIA's option, refused by {verb} ({exc})")
            continue
        unknown = [w for w in rewritten if w.startswith("--") and w not in own]
        bad += [f"bin/{verb} {opt}: becomes {w}, not an option of {verb}" for w in unknown]
    return bad


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return {m for m in re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, re.M)}


def wrong_targets(words: list[str], targets: set[str]) -> list[str]:
    """The targets of one `make ...` command that the Makefile lacks."""
    bad = []
    # VAR=value assignments (a quoted value may hold spaces) are not targets
    line = re.sub(r"\b\w+=(\"[^\"]*\"|'[^']*'|\S+)", " ", " ".join(words[1:]))
    for word in line.split():
        if (
            word.startswith("-")
            or "=" in word
            or "<" in word
            or not re.fullmatch(r"[\w*.-]*\w[\w*.-]*", word)
        ):
            continue
        pattern = re.compile(word.replace(".", r"\.").replace("*", r"[\w-]*") + "$")
        if not any(pattern.match(t) for t in targets):
            bad.append(f"make {word}: no such target")
    return bad


# Make variables whose value is more options of one verb (docs/training.md, Make variables)
EXTRAS = {
    "EXTRA": "train",
    "RENDER_EXTRA": "render",
    "EDIT_EXTRA": "edit",
    "EXPORT_EXTRA": "export",
    "EVAL_EXTRA": "evaluate",
    "IMPORT_EXTRA": "import",
}
EXTRA_VALUE = re.compile(r"(?<![\w])(" + "|".join(EXTRAS) + r")=(\"[^\"]*\"|'[^']*'|\S+)")


def extra_options(words: list[str]) -> list[str]:
    """The options a `RENDER_EXTRA="..."` (in a make command or alone) passes on that its verb
    does not take."""
    bad = []
    for var, value in EXTRA_VALUE.findall(" ".join(words)):
        bad += wrong_options(EXTRAS[var], value.strip("\"'").split())
    return bad


def problems(page: Path, text: str) -> list[str]:
    bad = broken_links(page, text)
    targets = make_targets()
    for code in code_of(text):
        for words in commands(code):
            if words[0] == "make":
                bad += [f"{page.name}: {b}" for b in wrong_targets(words, targets)]
            bad += [f"{page.name}: {b}" for b in extra_options(words)]
            for start, word in enumerate(words):
                m = VERB.search(word)
                if m and m.end() == len(word):  # bin/train, p2phd-train (not "p2phd-train:")
                    bad += [f"{page.name}: {b}" for b in wrong_options(m.group(1), words[start:])]
                    break
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_links_options_and_targets_are_true(page: Path) -> None:
    assert not problems(page, page.read_text())


def test_the_checks_can_fail() -> None:
    """Each kind of mistake is caught: a missing file, a missing anchor, an option the verb
    lacks, an NVIDIA option the verb refuses, a target the Makefile lacks, an option a Make
    variable passes on to a verb that lacks it."""
    page = REPO / "docs" / "training.md"
    text = (
        "[a](nowhere.md) [b](rendering.md#no-such-heading) [c](#make-variables)\n"
        "```sh\nbin/train m.h5 --name x \\\n    --no_such_option 3\n"
        "bin/render - --dataroot d\nmake train-512p NGF=8 && make no-such-target\n```\n"
        '`make render-test RENDER_EXTRA="--variants 2 --no_such_render_option"`\n'
        "`p2phd-export --run r --format ONNX`\n"
    )
    found = problems(page, text)
    assert len(found) == 6, found
    needles = ("nowhere.md", "#no-such-heading", "--no_such_option", "--dataroot", "no-such-target")
    for needle in (*needles, "--no_such_render_option"):
        assert any(needle in f for f in found), (needle, found)


def test_github_slugs() -> None:
    assert slug("Installing: the `p2phd-<verb>` commands") == "installing-the-p2phd-verb-commands"
    assert slug("Mixed precision (`--amp`)") == "mixed-precision---amp"
    assert slug("NVIDIA's command lines") == "nvidias-command-lines"
