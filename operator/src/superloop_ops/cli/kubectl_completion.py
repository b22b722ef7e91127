"""Shell completion for ``kubectl superloop``: commands, flags, and object names from the cluster.

``kubectl superloop completion bash`` (or ``zsh``) prints a script for ``kubectl-superloop``;
kubectl itself (1.26+) completes plugins through an executable ``kubectl_complete-superloop``
on PATH, which the package installs: it answers in cobra's protocol (one candidate a line, then
``:4``, "no file completion"). Object names come from the cluster in the namespace given on the
line; without a reachable cluster the names are simply not offered.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["NAME_SOURCES", "add_parser", "candidates", "complete", "run"]

# Which kind's names complete the first positional of a command.
NAME_SOURCES = {
    "status": "loops",
    "replay": "loops",
    "reconcile-now": "loops",
    "suspend": "loops",
    "resume": "loops",
    "approve": "handoffintents",
    "reject": "handoffintents",
    "decline": "handoffintents",
    "wait": "handoffintents",
    "fleet": "fleets",
    "suppressions": "fleetpolicies",
}
_KINDS = ("loops", "fleets", "fleetpolicies", "handoffintents", "promotionapplies")
_VALUED = {
    "-n",
    "--namespace",
    "--context",
    "--kubeconfig",
    "-l",
    "--selector",
    "--as",
    "--as-group",
    "-o",
    "--output",
}
_NO_FILES = ":4"

_BASH = """# kubectl-superloop completion (bash; for zsh: autoload bashcompinit && bashcompinit first)
_kubectl_superloop() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local IFS=$'\\n'
  COMPREPLY=( $(compgen -W "$(kubectl-superloop __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null \\
    | grep -v '^:')" -- "$cur") )
}
complete -F _kubectl_superloop kubectl-superloop
"""


def add_parser(sub: Any) -> None:
    completion = sub.add_parser("completion", help="print a shell completion script (bash, zsh)")
    completion.add_argument("shell", choices=("bash", "zsh"))


def run(args: argparse.Namespace) -> int:
    prefix = "autoload -U +X bashcompinit && bashcompinit\n" if args.shell == "zsh" else ""
    print(prefix + _BASH, end="")
    return 0


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(opt for a in parser._actions for opt in a.option_strings if opt.startswith("--"))


def _positionals(words: Sequence[str]) -> tuple[list[str], str | None]:
    """Words that are not flags or flag values; the namespace given on the line."""
    out: list[str] = []
    namespace = None
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in _VALUED:
            skip = True
            if word in ("-n", "--namespace") and i + 1 < len(words):
                namespace = words[i + 1]
            continue
        if word.startswith("-"):
            if word.startswith("--namespace="):
                namespace = word.split("=", 1)[1]
            continue
        out.append(word)
    return out, namespace


def candidates(
    parser: argparse.ArgumentParser, words: Sequence[str], names: Callable[[str, str | None], list[str]]
) -> list[str]:
    """What may come next after ``words`` (the last word is the one being completed)."""
    done, current = list(words[:-1]), (words[-1] if words else "")
    commands = _commands(parser)
    positionals, namespace = _positionals(done)
    if current.startswith("-"):
        sub = commands.get(positionals[0]) if positionals else None
        return [f for f in _flags(sub or parser) if f.startswith(current)]
    if done and done[-1] in ("-o", "--output"):
        return ["json", "yaml", "wide", "name"]
    if done and done[-1] in _VALUED:
        return []
    if not positionals:
        return sorted(c for c in commands if c.startswith(current))
    command, args = positionals[0], positionals[1:]
    if command == "get":
        if not args:
            return [k for k in _KINDS if k.startswith(current)]
        return [n for n in names(args[0], namespace) if n.startswith(current)] if len(args) == 1 else []
    source = NAME_SOURCES.get(command)
    if source and not args:
        return [n for n in names(source, namespace) if n.startswith(current)]
    return []


def complete(
    argv: Sequence[str], parser: argparse.ArgumentParser, names: Callable[[str, str | None], list[str]]
) -> int:
    """``__complete``: print the candidates and cobra's directive."""
    for candidate in candidates(parser, argv, names):
        print(candidate)
    print(_NO_FILES)
    sys.stdout.flush()
    return 0
