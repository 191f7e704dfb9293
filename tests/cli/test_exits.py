"""The exit statuses have one home, ``rmbg_cli.exits``: no subcommand defines its own."""

from __future__ import annotations

import ast

from rmbg_cli import exits
from tests.conftest import ROOT

CLI = ROOT / "client" / "rmbg_cli"


def test_exit_statuses_are_defined_once_and_imported_everywhere_else():
    assert (exits.EXIT_OK, exits.EXIT_FAILED, exits.EXIT_USAGE, exits.EXIT_INTERRUPTED) == (0, 1, 2, 130)
    users = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "exits.py":
            continue
        tree = ast.parse(path.read_text())
        defined = {t.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                   for t in ast.walk(target) if isinstance(t, ast.Name) and t.id.startswith("EXIT_")}
        assert not defined, f"{path.name} defines {sorted(defined)}; import them from rmbg_cli.exits"
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id.startswith("EXIT_")}
        imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "rmbg_cli.exits" for a in node.names}
        assert used <= imported, f"{path.name} uses {sorted(used - imported)} without importing them"
        users += [path.name] if used else []
    assert {"main.py", "remove.py", "serve.py", "build_repo.py", "export.py", "gateway.py", "up.py"} <= set(users)
