"""Every mix line in the README's command blocks is run by a test (tests/readme_commands.py
names which); this check needs no mix, so it runs everywhere. The README's `hexvault` lines
must parse, and its links (and docs/'s) must lead to a file and heading that exist."""

import click
import pytest

from tests import readme_commands


def test_every_mix_command_in_the_readme_is_run_by_a_test():
    lines = readme_commands.mix_lines()
    assert lines, "no mix commands found in the README's sh blocks"
    missing = [line for line in lines if line not in readme_commands.COVERED]
    assert not missing, f"README mix commands no test runs: {missing}"
    for line, test in readme_commands.COVERED.items():
        module, name = test.split("::")
        source = (readme_commands.README.parent / "tests" / module).read_text()
        assert f"def {name}(" in source, f"{test} (said to run {line!r}) does not exist"


def test_every_hexvault_command_in_the_readme_parses():
    """Each `hexvault ...` line of the README's sh blocks names a real command with options and
    arguments it accepts (parsed by the CLI itself, nothing run)."""
    lines = readme_commands.hexvault_lines()
    assert len(lines) > 10, lines
    refused = {}
    for line, args in lines:
        try:
            readme_commands.parse_cli(args)
        except click.UsageError as exc:
            # The README names files on the server (a backup to restore), not on this machine.
            if not (isinstance(exc, click.BadParameter) and "does not exist" in exc.format_message()):
                refused[line] = exc.format_message()
    assert not refused, f"README hexvault lines the CLI refuses: {refused}"


def test_a_wrong_hexvault_line_is_refused_by_that_check():
    for args in (["key", "rotate", "ci", "--org", "beta", "[--grace", "24h]"], ["org", "craete", "beta"],
                 ["key", "create", "ci"]):  # a typo'd option, an unknown command, a missing required option
        with pytest.raises(click.UsageError):
            readme_commands.parse_cli(args)


def test_every_link_between_the_readme_and_docs_leads_somewhere():
    broken = []
    for doc, target, anchor in readme_commands.local_links():
        if not target.exists():
            broken.append(f"{doc.name}: {target} does not exist")
        elif anchor and anchor not in readme_commands.anchors(target):
            broken.append(f"{doc.name}: no heading for #{anchor} in {target.name}")
    assert not broken, broken
