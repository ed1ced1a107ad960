#!/usr/bin/env python3
"""Check Amazon States Language definitions: what cfn-lint and `sam validate` do not look at.

    python tools/check_asl.py [--template template.yaml] [statemachine/*.asl.json ...]

Per definition: valid JSON; StartAt and every Next / Default / Choice / Catch target exist;
every state reachable from StartAt; a terminal state reachable from every state; each state has
exactly one of Next / End (Choice, Succeed, Fail excepted); Retry / Catch shapes (ErrorEquals
non-empty, States.ALL alone and last, numeric fields); Map ItemProcessor / Iterator and Parallel
Branches checked recursively; Distributed Map needs ItemReader/ProcessorConfig.ExecutionType;
inline Map concurrency capped. With a template: every ``${Name}`` in a definition is in the
state machine's DefinitionSubstitutions and every substitution is used.
Exit status 1 when anything is wrong.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TERMINAL_TYPES = {"Succeed", "Fail"}
TYPES = {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
INLINE_MAP_MAX_CONCURRENCY = 40  # an inline Map never runs more than 40 iterations at once
RETRY_NUMBERS = {"IntervalSeconds": int, "MaxAttempts": int, "BackoffRate": (int, float),
                 "MaxDelaySeconds": int}
CHOICE_OPERATORS = re.compile(
    r"^(String|Numeric|Boolean|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|"
    r"GreaterThanEquals|Matches)(Path)?$|^Is(Null|Present|Numeric|String|Boolean|Timestamp)$"
)


def _targets(state: dict) -> list[tuple[str, str]]:
    out = []
    if "Next" in state:
        out.append(("Next", state["Next"]))
    if "Default" in state:
        out.append(("Default", state["Default"]))
    for i, rule in enumerate(state.get("Choices") or []):
        if isinstance(rule, dict) and "Next" in rule:
            out.append((f"Choices[{i}].Next", rule["Next"]))
    for i, c in enumerate(state.get("Catch") or []):
        if isinstance(c, dict) and "Next" in c:
            out.append((f"Catch[{i}].Next", c["Next"]))
    return out


def _check_errors_list(where: str, kind: str, entries: Any) -> list[str]:
    problems = []
    if not isinstance(entries, list):
        return [f"{where}: {kind} must be a list"]
    for i, entry in enumerate(entries):
        w = f"{where}.{kind}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{w}: must be an object")
            continue
        errors = entry.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) and e for e in errors):
            problems.append(f"{w}: ErrorEquals must be a non-empty list of error names")
            continue
        if "States.ALL" in errors and (len(errors) > 1 or i != len(entries) - 1):
            problems.append(f"{w}: States.ALL must appear alone in the last {kind} entry")
        if kind == "Retry":
            for key, typ in RETRY_NUMBERS.items():
                if key in entry and (isinstance(entry[key], bool) or not isinstance(entry[key], typ)):
                    problems.append(f"{w}: {key} must be a number")
            if entry.get("BackoffRate", 2.0) < 1.0 if isinstance(entry.get("BackoffRate", 2.0), (int, float)) else False:
                problems.append(f"{w}: BackoffRate must be >= 1")
            if isinstance(entry.get("MaxAttempts"), int) and entry["MaxAttempts"] < 0:
                problems.append(f"{w}: MaxAttempts must be >= 0")
            unknown = set(entry) - {"ErrorEquals", "JitterStrategy", "Comment", *RETRY_NUMBERS}
            if unknown:
                problems.append(f"{w}: unknown Retry fields {sorted(unknown)}")
        else:
            if not isinstance(entry.get("Next"), str):
                problems.append(f"{w}: Catch needs a Next state")
            unknown = set(entry) - {"ErrorEquals", "Next", "ResultPath", "Comment", "Output", "Assign"}
            if unknown:
                problems.append(f"{w}: unknown Catch fields {sorted(unknown)}")
    return problems


def _check_choice_rule(where: str, rule: Any, top: bool) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where}: choice rule must be an object"]
    problems = []
    if top and not isinstance(rule.get("Next"), str):
        problems.append(f"{where}: a top-level choice rule needs Next")
    if not top and "Next" in rule:
        problems.append(f"{where}: a nested choice rule must not have Next")
    for combinator in ("And", "Or"):
        if combinator in rule:
            subs = rule[combinator]
            if not isinstance(subs, list) or not subs:
                problems.append(f"{where}.{combinator}: must be a non-empty list")
            else:
                for i, sub in enumerate(subs):
                    problems += _check_choice_rule(f"{where}.{combinator}[{i}]", sub, False)
            return problems
    if "Not" in rule:
        return problems + _check_choice_rule(f"{where}.Not", rule["Not"], False)
    if "Condition" in rule:  # JSONata
        return problems
    if not isinstance(rule.get("Variable"), str) or not rule["Variable"].startswith("$"):
        problems.append(f"{where}: Variable must be a JSONPath starting with $")
    ops = [k for k in rule if CHOICE_OPERATORS.match(k)]
    if len(ops) != 1:
        problems.append(f"{where}: exactly one comparison operator required, found {ops}")
    return problems


def check_machine(defn: Any, where: str = "$") -> list[str]:
    """Problems of one state machine (or Map processor / Parallel branch)."""
    if not isinstance(defn, dict):
        return [f"{where}: definition must be a JSON object"]
    states = defn.get("States")
    start = defn.get("StartAt")
    if not isinstance(states, dict) or not states:
        return [f"{where}: States must be a non-empty object"]
    problems: list[str] = []
    if start not in states:
        problems.append(f"{where}: StartAt {start!r} is not a state")
    for name, state in states.items():
        w = f"{where}.States.{name}"
        if not isinstance(state, dict):
            problems.append(f"{w}: must be an object")
            continue
        typ = state.get("Type")
        if typ not in TYPES:
            problems.append(f"{w}: unknown Type {typ!r}")
            continue
        for label, target in _targets(state):
            if target not in states:
                problems.append(f"{w}: {label} -> {target!r} does not exist")
        has_next, has_end = "Next" in state, state.get("End") is True
        if typ in ("Task", "Pass", "Wait", "Parallel", "Map"):
            if has_next == has_end:
                problems.append(f"{w}: needs exactly one of Next or End")
        elif typ == "Choice":
            if has_next or "End" in state:
                problems.append(f"{w}: a Choice state has no Next/End")
            rules = state.get("Choices")
            if not isinstance(rules, list) or not rules:
                problems.append(f"{w}: Choices must be a non-empty list")
            else:
                for i, rule in enumerate(rules):
                    problems += _check_choice_rule(f"{w}.Choices[{i}]", rule, True)
        elif has_next or "End" in state:
            problems.append(f"{w}: a {typ} state is terminal (no Next/End)")
        if "Retry" in state:
            if typ not in ("Task", "Parallel", "Map"):
                problems.append(f"{w}: Retry is only allowed on Task/Parallel/Map")
            problems += _check_errors_list(w, "Retry", state["Retry"])
        if "Catch" in state:
            if typ not in ("Task", "Parallel", "Map"):
                problems.append(f"{w}: Catch is only allowed on Task/Parallel/Map")
            problems += _check_errors_list(w, "Catch", state["Catch"])
        if typ == "Task" and not isinstance(state.get("Resource"), str):
            problems.append(f"{w}: a Task needs a Resource")
        if typ == "Map":
            problems += _check_map(w, state)
        if typ == "Parallel":
            branches = state.get("Branches")
            if not isinstance(branches, list) or not branches:
                problems.append(f"{w}: Branches must be a non-empty list")
            else:
                for i, b in enumerate(branches):
                    problems += check_machine(b, f"{w}.Branches[{i}]")
    if problems:
        return problems
    problems += _check_graph(where, states, start)
    return problems


def _check_map(w: str, state: dict) -> list[str]:
    problems = []
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if processor is None:
        return [f"{w}: a Map needs ItemProcessor (or Iterator)"]
    if "ItemProcessor" in state and "Iterator" in state:
        problems.append(f"{w}: give ItemProcessor or Iterator, not both")
    config = processor.get("ProcessorConfig", {}) if isinstance(processor, dict) else {}
    mode = config.get("Mode", "INLINE")
    if mode == "DISTRIBUTED":
        if config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
            problems.append(f"{w}: a Distributed Map needs ProcessorConfig.ExecutionType STANDARD|EXPRESS")
        if "ItemReader" not in state and "ItemsPath" not in state:
            problems.append(f"{w}: a Distributed Map needs an ItemReader (or ItemsPath)")
    elif mode == "INLINE":
        for key in ("ItemReader", "ResultWriter", "ItemBatcher", "ToleratedFailurePercentage"):
            if key in state:
                problems.append(f"{w}: {key} is only allowed in a Distributed Map")
        mc = state.get("MaxConcurrency")
        if not isinstance(mc, int) or isinstance(mc, bool) or not 1 <= mc <= INLINE_MAP_MAX_CONCURRENCY:
            problems.append(f"{w}: an inline Map needs MaxConcurrency in 1..{INLINE_MAP_MAX_CONCURRENCY}")
    else:
        problems.append(f"{w}: unknown ProcessorConfig.Mode {mode!r}")
    reader = state.get("ItemReader")
    if reader is not None and not (isinstance(reader, dict) and isinstance(reader.get("Resource"), str)):
        problems.append(f"{w}: ItemReader needs a Resource")
    return problems + check_machine(processor, f"{w}.ItemProcessor")


def _check_graph(where: str, states: dict, start: str) -> list[str]:
    edges = {name: [t for _, t in _targets(s)] for name, s in states.items()}
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += edges[n]
    problems = [f"{where}.States.{n}: unreachable from StartAt" for n in states if n not in seen]
    terminal = {n for n, s in states.items() if s.get("Type") in TERMINAL_TYPES or s.get("End") is True}
    # states that can reach a terminal state (reverse closure)
    can_end, changed = set(terminal), True
    while changed:
        changed = False
        for n, targets in edges.items():
            if n not in can_end and any(t in can_end for t in targets):
                can_end.add(n)
                changed = True
    if start not in can_end:
        problems.append(f"{where}: no terminal state is reachable from StartAt")
    problems += [f"{where}.States.{n}: cannot reach a terminal state (endless loop)"
                 for n in states if n in seen and n not in can_end and n != start]
    return problems


def substitutions_used(text: str) -> set[str]:
    return set(SUBSTITUTION.findall(text))


def template_state_machines(template_path: Path) -> dict[str, tuple[Path, set[str]]]:
    """{logical id: (definition file, DefinitionSubstitutions names)} from a SAM template."""
    from cfnlint.decode import decode  # understands !Ref / !GetAtt / !Sub

    template, matches = decode(str(template_path))
    if template is None:
        raise ValueError(f"{template_path}: cannot parse: {matches}")
    out = {}
    for name, res in (template.get("Resources") or {}).items():
        if res.get("Type") not in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            continue
        props = res.get("Properties") or {}
        uri = props.get("DefinitionUri") or props.get("DefinitionS3Location")
        if not isinstance(uri, str):
            continue
        subs = set((props.get("DefinitionSubstitutions") or {}).keys())
        out[name] = ((template_path.parent / uri).resolve(), subs)
    return out


def check_file(path: Path, substitutions: set[str] | None = None) -> list[str]:
    try:
        text = path.read_text()
        defn = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path.name}: not valid JSON ({exc})"]
    problems = [f"{path.name}: {p}" for p in check_machine(defn)]
    if substitutions is not None:
        used = substitutions_used(text)
        problems += [f"{path.name}: ${{{n}}} is not in DefinitionSubstitutions" for n in sorted(used - substitutions)]
        problems += [f"{path.name}: DefinitionSubstitutions {n} is never used" for n in sorted(substitutions - used)]
    return problems


def check_all(files: list[Path], template: Path | None) -> list[str]:
    subs_by_file: dict[Path, set[str]] = {}
    problems: list[str] = []
    if template is not None:
        for logical, (uri, subs) in template_state_machines(template).items():
            if not uri.exists():
                problems.append(f"{template.name}: {logical} DefinitionUri {uri} does not exist")
            subs_by_file[uri] = subs
    for f in files:
        subs = subs_by_file.get(f.resolve())
        if template is not None and subs is None:
            problems.append(f"{f.name}: not referenced by any state machine in {template.name}")
        problems += check_file(f, subs)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    ap.add_argument("--no-template", action="store_true")
    args = ap.parse_args(argv)
    files = args.files or sorted((ROOT / "statemachine").glob("*.asl.json"))
    problems = check_all(files, None if args.no_template else args.template)
    for p in problems:
        print(p)
    print(f"{len(files)} definition(s), {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
