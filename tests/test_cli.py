"""Command-line contract: --help shows defaults, seed spellings parse, exit codes, stdout."""

import dataclasses
import io
import subprocess
from pathlib import Path

import pytest

from p2phd.core import cli, options
from p2phd.core.options import DataOptions, ModelOptions, RuntimeOptions, flat_options, opt
from p2phd.data.prepare import PrepareOptions

REPO = Path(__file__).resolve().parents[1]


@flat_options
class AllOptions(RuntimeOptions, DataOptions, ModelOptions):
    def validate(self) -> None:
        options.validate_data_model(self)


def _help(cls: type, capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.parse_options(cls, ["--help"], "p2phd", "test")
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


@pytest.mark.parametrize("cls", [AllOptions, PrepareOptions])
def test_help_shows_every_option_with_its_default(cls: type, capsys: pytest.CaptureFixture) -> None:
    text = _help(cls, capsys)
    helps = {a.dest: a.help for a in cli._OneLineParser(cls)._actions}
    for f in dataclasses.fields(cls):
        assert f"--{f.name}" in text, f.name
        assert f"(default: {f.default!r})" in helps[f.name] or helps[f.name].endswith(
            "(required)"
        ), f.name
        assert helps[f.name] in text


def test_seed_defaults() -> None:
    o = AllOptions()
    seed = dict(
        label_nc=35,
        load_size=1024,
        fine_size=512,
        resize_or_crop="scale_width",
        no_instance=False,
        ngf=64,
        n_downsample_global=4,
        n_blocks_global=9,
        n_blocks_local=3,
        n_local_enhancers=1,
        num_D=2,
        n_layers_D=3,
        ndf=64,
        feat_num=3,
        nef=16,
        netG="global",
        norm="instance",
        device_target="CPU",
    )
    assert {k: getattr(o, k) for k in seed} == seed


def test_seed_spellings_parse() -> None:
    o = cli.parse_options(
        AllOptions,
        [
            "--label_nc",
            "0",
            "--no_instance",
            "--instance_feat",
            "False",
            "--label_feat",
            "True",
            "--n-blocks-global",
            "3",
            "--pynative",
            "true",
            "--netG",
            "local",
        ],
        "p",
        "d",
    )
    assert (
        o.label_nc,
        o.no_instance,
        o.instance_feat,
        o.label_feat,
        o.n_blocks_global,
        o.pynative,
        o.netG,
    ) == (0, True, False, True, 3, True, "local")
    o = cli.parse_options(AllOptions, ["--no-instance", "True", "--verbose"], "p", "d")
    assert o.no_instance and o.verbose and not o.dry_run
    p = cli.parse_options(PrepareOptions, ["--data_root", "/x", "--no_instance", "True"], "p", "d")
    assert p.dataroot == "/x" and p.no_instance
    assert cli.parse_options(PrepareOptions, ["--data-root", "/y"], "p", "d").dataroot == "/y"


def test_bad_usage_is_one_line_exit_2(capsys: pytest.CaptureFixture) -> None:
    def main(argv: list[str] | None) -> int:
        cli.parse_options(AllOptions, argv, "p", "d")
        return 0

    for argv, words in (
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--ngf", "x"], "invalid int value"),
        (["--netG", "huge"], "invalid choice"),
        (
            ["--resize_or_crop", "scale_width_and_crop", "--fine_size", "500"],
            "--fine_size 500 must be a multiple of 16",
        ),
        (["--netG", "local", "--load_size", "1040"], "multiple of 32"),
        (["--instance_feat", "--label_feat"], "choose one"),
    ):
        assert cli.run_verb(main, argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_exit_codes_and_stdout(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    def boom(argv: list[str] | None) -> int:
        raise RuntimeError("kaput")

    def ok(argv: list[str] | None) -> None:
        cli.emit(tmp_path / "out.h5")

    assert cli.run_verb(boom, []) == 1
    assert "RuntimeError: kaput" in capsys.readouterr().err
    assert cli.run_verb(ok, []) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'out.h5'}\n"


def test_atomic_path_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "a.json"
    with pytest.raises(ValueError), cli.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert not target.exists() and list(target.parent.iterdir()) == []
    cli.write_json(target, {"b": 1})
    assert target.read_text() == '{\n  "b": 1\n}\n'
    monkeypatch.setattr("sys.stdin", io.StringIO("manifests/x.h5\n"))
    assert cli.resolve_input("-") == "manifests/x.h5"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(cli.UsageError, match="stdin was empty"):
        cli.resolve_input("-")
    assert cli.resolve_input("a.h5") == "a.h5"


def test_true_default_booleans_are_refused() -> None:
    with pytest.raises(TypeError, match="must default to False"):

        @flat_options
        class Bad:
            flip: bool = opt(True, "inverted flag")


def test_bin_launcher_runs_from_any_directory() -> None:
    proc = subprocess.run(
        [str(REPO / "bin" / "prepare"), "--help"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--dataroot" in proc.stdout and "(default: 1024)" in proc.stdout
    proc = subprocess.run(
        [str(REPO / "bin" / "prepare"), "--label_nc", "-1", "--dataroot", "x"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr
        == "prepare: error: --label_nc must be 0 (RGB input) or 1..256 (uint8 labels), got -1\n"
    )
