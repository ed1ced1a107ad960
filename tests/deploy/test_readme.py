"""The README's set-up and its running-locally sections say what the code does."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else None]


def _commands(section: str) -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_set_up_is_exactly_make_demo_and_make_test():
    assert _commands(_section("Set-up on a fresh machine")) == [["make", "demo"], ["make", "test"]]


def test_running_it_without_aws_commands_are_what_the_command_line_takes():
    from cli.command import _glue_negative_values, build_parser

    commands = _commands(_section("Running it without AWS"))
    parser = build_parser()
    colocate = [c for c in commands if c[0] == ".venv/bin/colocate"]
    sandboxed = [c[3:] for c in commands if c[:3] == [".venv/bin/python", "-m", "sandbox.colocate"]]
    assert {c[1] for c in colocate} == {"run", "files"} and sandboxed
    for cmd in colocate + [["colocate", *c] for c in sandboxed]:
        args = parser.parse_args(_glue_negative_values(cmd[1:]))  # exits (fails the test) on a bad option
        assert args.command == cmd[1]
    assert ["make", "smoke"] in commands
    assert re.search(r"^smoke:", (REPO / "Makefile").read_text(), re.M)


def test_the_quoted_error_is_the_one_the_command_line_prints(capsys, tmp_path):
    from cli.command import main

    quoted = re.search(r"\(`(colocate: error: --radius-m: [^`]+)`\)", " ".join(README.split())).group(1)
    code = main(["run", "--bbox", "-62.8,81.7,-56.4,83", "--date", "2019-06-22", "--radius-m", "60000",
                 "--out", str(tmp_path)])
    assert code == 2 and capsys.readouterr().err.strip() == quoted


@pytest.mark.parametrize("cmd", _commands(_section("Driving the entry points offline")), ids=lambda c: c[-1])
def test_driving_the_entry_points_offline_names_real_events(cmd):
    import json

    from sandbox.invoke import entry_point

    assert cmd[:3] == [".venv/bin/python", "-m", "sandbox.invoke"]
    event = REPO / cmd[3]
    kind = entry_point(json.loads(event.read_text()), event.name)
    described = {"direct.json": "direct", "api_post.json": "api", "stepfunctions_input.json": "stepfunctions",
                 "sfn_task.json": "direct"}
    assert kind == described[event.name]
