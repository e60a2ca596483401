"""Hostile job specs that cost instead of break: alias bombs (under an unknown key, under ``vars:``, in a
``--set`` value), deep nesting, recursive aliases, too many aliases and a 50 MB file. Each is refused with exit
code 2 and one paragraph, in well under a second and without growing the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.yamlsource import LIMITS, load_yaml

HEAD = """\
name: bomb
data: {path: data/*.parquet, columns: {predictions: score, targets: label}}
task: binary
metrics: [accuracy]
execution: {runner: local}
output: {uri: out}
"""


def alias_bomb(levels: int, key: str = "extra") -> str:
    """A spec whose ``key`` holds ``levels`` lists of ten aliases each: 10^(levels+1) strings once expanded,
    in under 100 bytes per level."""
    lines = [f"{key}:", '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return HEAD + "\n".join(lines) + "\n"


def deep(levels: int, flow: bool) -> str:
    if flow:
        return HEAD + "extra: " + "[" * levels + "]" * levels + "\n"
    return HEAD + "extra:\n" + "- " * levels + "x\n"  # block lists, each the first item of the one above


HOSTILE = {
    "alias bomb under an unknown key": (alias_bomb(9), "values once its aliases are expanded"),
    "alias bomb under vars": (alias_bomb(9, "vars"), "values once its aliases are expanded"),
    "alias bomb of six levels": (alias_bomb(6), "values once its aliases are expanded"),
    "1000-deep flow lists": (deep(1000, flow=True), "nest more than 64 levels deep"),
    "1000-deep block lists": (deep(1000, flow=False), "nest more than 64 levels deep"),
    "recursive alias": (HEAD + "extra: &a [1, *a]\n", "alias *a refers to the mapping or list it is inside"),
    "too many aliases": (
        HEAD + "vars: {a: &a x}\nextra: [" + ", ".join(["*a"] * 1500) + "]\n",
        "more than 1,000 aliases",
    ),
}


def _write_hostile(directory: Path, names: tuple[str, ...] = (*HOSTILE, "50 MB file")) -> dict[str, tuple[Path, str]]:
    """The hostile specs ``names`` (by default all, with the 50 MB one) as files; name -> (path, text the error
    must contain)."""
    out = {}
    for i, (name, (text, expected)) in enumerate(HOSTILE.items()):
        if name not in names:
            continue
        path = directory / f"hostile-{i}.yaml"
        path.write_text(text)
        out[name] = (path, expected)
    if "50 MB file" not in names:
        return out
    big = directory / "big.yaml"
    with big.open("w") as handle:
        handle.write(HEAD)
        line = "# " + "x" * 97 + "\n"
        handle.write(line * (50 * 2**20 // len(line)))
    out["50 MB file"] = (big, "larger than 1 MB")
    return out


@pytest.mark.parametrize("name", [*HOSTILE, "50 MB file"])
def test_a_hostile_spec_is_refused_with_exit_2_and_one_paragraph(tmp_path, capsys, name):
    path, expected = _write_hostile(tmp_path, (name,))[name]
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"evalpipe: error: {path}") and expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_alias_bomb_in_a_set_value_is_refused(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(HEAD.replace("data/*.parquet", str(tmp_path / "none" / "*.parquet")))
    bomb = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]" for i in range(9)) + "]"
    assert main(["validate", str(path), "--set", f"vars.x={bomb}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evalpipe: error: --set") and "values once its aliases are expanded" in err, err


def test_specs_within_the_limits_keep_their_anchors_and_lines():
    text = HEAD + "vars: {region: &r eu, regions: [*r, *r, us]}\nextra:\n" + "  " * 1 + "k: " + "[" * 60 + "]" * 60
    source = load_yaml(text + "\n", "job.yaml")
    assert source.data["vars"]["regions"] == ["eu", "eu", "us"]
    assert source.lines[("vars",)] == 7 and source.lines[("extra", "k")] == 9
    bomb = load_yaml(alias_bomb(3, "vars"), "job.yaml")  # 10^4 strings: within the limit, loaded as written
    assert len(bomb.data["vars"]["l3"]) == 10 and bomb.data["vars"]["l3"][9][9][9][9] == "lol"


_MEASURE = """
import json, re, sys, time
from pipelines.errors import SpecError
from pipelines.yamlsource import LIMITS, load_yaml

out = {}
for name, path in json.loads(sys.argv[1]).items():
    start = time.perf_counter()
    try:
        with open(path, "rb") as handle:  # as pipelines.spec.load reads a spec: at most the limit, plus one byte
            load_yaml(handle.read(LIMITS.bytes + 1).decode(), path)
        error = None
    except SpecError as exc:
        error = str(exc)
    out[name] = {"seconds": time.perf_counter() - start, "error": error}
with open("/proc/self/status") as status:  # this program's own high-water mark (ru_maxrss counts the forking parent's)
    out["peak_rss_mb"] = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) / 1024
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_hostile_specs_are_refused_in_under_a_second_with_peak_rss_under_200_mb(tmp_path):
    cases = _write_hostile(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps({k: str(p) for k, (p, _) in cases.items()})],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    measured = json.loads(done.stdout)
    peak = measured.pop("peak_rss_mb")
    assert peak < 200, measured
    cases["50 MB file"] = (cases["50 MB file"][0], f"{LIMITS.bytes + 1:,} bytes, more than the {LIMITS.bytes:,}")
    for name, (_, expected) in cases.items():
        got = measured[name]
        assert got["error"] is not None and expected in got["error"], (name, got)
        assert got["seconds"] < 1.0, (name, got)
