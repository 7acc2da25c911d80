"""Every mix line in the README's command blocks is run by a test (tests/readme_commands.py
names which); this check needs no mix, so it runs everywhere."""

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
